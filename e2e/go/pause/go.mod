// The pod sandbox's process (what Kubernetes' pause image runs): no registry here holds a
// pause image, so the node's sandbox image is made from this one static binary.
module modeldeploy.dev/e2e/go/pause

go 1.26.8
