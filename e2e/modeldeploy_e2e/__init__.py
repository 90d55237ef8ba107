"""Local Kubernetes cluster harness: control plane, node agent, S3 and a traffic helper."""
