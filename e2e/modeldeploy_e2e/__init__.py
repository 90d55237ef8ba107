"""Local Kubernetes cluster harness: the control plane and a real node, the
project's images, S3, the operator and a traffic helper."""
