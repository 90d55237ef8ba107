"""A node agent standing in for the kubelet: runs the pods bound to one Node as local
processes (`python -m modeldeploy_e2e.nodeagent`)."""
