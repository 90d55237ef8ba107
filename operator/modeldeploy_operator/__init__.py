"""modeldeploy operator: spec models, the pure rollout planner, builders and kopf handlers."""
