"""IRSA on the local cluster with no AWS: what the EKS pod identity webhook does, done here.

On EKS a mutating admission webhook rewrites every pod whose ServiceAccount carries
`eks.amazonaws.com/role-arn`: it adds a projected service-account token with the audience
`sts.amazonaws.com`, mounts it at /var/run/secrets/eks.amazonaws.com/serviceaccount/, and
sets AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE in every container. `PodIdentityWebhook`
is that webhook (HTTPS on loopback, registered with a MutatingWebhookConfiguration), plus
AWS_ENDPOINT_URL_STS so botocore asks a loopback STS (MinIO) instead of AWS.

`allow_issuer_discovery` lets anyone read the API server's OIDC discovery document and JWKS
(as EKS publishes them), which MinIO's STS needs to verify the tokens.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import ssl
import threading
from pathlib import Path
from typing import Any

from modeldeploy_e2e import pki
from modeldeploy_e2e.kube import KubeClient, KubeError
from modeldeploy_e2e.netns import listen
from modeldeploy_e2e.s3 import LOOPBACK

ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"
AUDIENCE = "sts.amazonaws.com"
TOKEN_DIR = "/var/run/secrets/eks.amazonaws.com/serviceaccount"
VOLUME = "aws-iam-token"
JsonDict = dict[str, Any]


def allow_issuer_discovery(client: KubeClient) -> None:
    """Bind system:service-account-issuer-discovery to unauthenticated users (idempotent)."""
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "modeldeploy-e2e-oidc-discovery"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "system:service-account-issuer-discovery"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                      "name": "system:unauthenticated"}],
    }
    try:
        client.create("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", binding)
    except KubeError as error:
        if "AlreadyExists" not in str(error) and "already exists" not in str(error):
            raise


def pod_patch(pod: JsonDict, role_arn: str, sts_endpoint: str) -> list[JsonDict]:
    """The JSON patch the webhook answers for one pod (the EKS webhook's mutation)."""
    spec = pod.get("spec", {})
    patch: list[JsonDict] = []
    volume = {"name": VOLUME, "projected": {"sources": [{"serviceAccountToken": {
        "audience": AUDIENCE, "expirationSeconds": 86400, "path": "token"}}]}}
    if "volumes" in spec:
        patch.append({"op": "add", "path": "/spec/volumes/-", "value": volume})
    else:
        patch.append({"op": "add", "path": "/spec/volumes", "value": [volume]})
    env = [{"name": "AWS_ROLE_ARN", "value": role_arn},
           {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": f"{TOKEN_DIR}/token"},
           {"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"},
           {"name": "AWS_ENDPOINT_URL_STS", "value": sts_endpoint}]
    mount = {"name": VOLUME, "mountPath": TOKEN_DIR, "readOnly": True}
    for kind in ("initContainers", "containers"):
        for index, container in enumerate(spec.get(kind, [])):
            base = f"/spec/{kind}/{index}"
            names = {e.get("name") for e in container.get("env", [])}
            if "AWS_ROLE_ARN" in names:
                continue  # the webhook leaves containers that set their own
            if "env" in container:
                patch += [{"op": "add", "path": f"{base}/env/-", "value": e} for e in env]
            else:
                patch.append({"op": "add", "path": f"{base}/env", "value": env})
            if "volumeMounts" in container:
                patch.append({"op": "add", "path": f"{base}/volumeMounts/-", "value": mount})
            else:
                patch.append({"op": "add", "path": f"{base}/volumeMounts", "value": [mount]})
    return patch


class PodIdentityWebhook:
    """The EKS pod identity webhook's mutation, served on loopback for one namespace."""

    def __init__(self, client: KubeClient, pki_dir: Path, work_dir: Path,
                 sts_endpoint: str, netns: str | None = None) -> None:
        self.client = client
        self.netns = netns
        self.pki_dir = pki_dir
        self.work_dir = work_dir
        self.sts_endpoint = sts_endpoint
        self.mutated: list[str] = []
        self._server: http.server.ThreadingHTTPServer | None = None
        self._name = ""

    def _review(self, review: JsonDict) -> JsonDict:
        request = review["request"]
        pod = request.get("object") or {}
        namespace = request.get("namespace") or pod.get("metadata", {}).get("namespace", "")
        account = pod.get("spec", {}).get("serviceAccountName") or "default"
        response: JsonDict = {"uid": request["uid"], "allowed": True}
        try:
            sa = self.client.get(f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}")
        except KubeError:
            sa = {}
        role = (sa.get("metadata", {}).get("annotations") or {}).get(ROLE_ANNOTATION)
        if role:
            patch = pod_patch(pod, role, self.sts_endpoint)
            response["patchType"] = "JSONPatch"
            response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
            self.mutated.append(pod.get("metadata", {}).get("generateName", "")
                                or pod.get("metadata", {}).get("name", ""))
        return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "response": response}

    def start(self, namespace: str) -> PodIdentityWebhook:
        """Serve HTTPS on loopback and register for pod creations in `namespace`."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        ca = pki.KeyPair(self.pki_dir / "ca.crt", self.pki_dir / "ca.key")
        leaf = pki.ensure_leaf(self.work_dir, ca, "pod-identity-webhook",
                               pki.subject("pod-identity-webhook"), ips=(LOOPBACK,))
        webhook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                answer = json.dumps(webhook._review(json.loads(body))).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Handler,
                                                 bind_and_activate=False)
        # The API server calls it: on a real node from inside the node's namespace, whose
        # own loopback the webhook then listens on.
        server.socket = listen(self.netns, (LOOPBACK, 0))
        server.server_address = server.socket.getsockname()[:2]
        server.server_port = server.server_address[1]
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(leaf.cert), str(leaf.key))
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._name = f"modeldeploy-e2e-pod-identity-{namespace}"
        self.client.create(
            "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
            {"apiVersion": "admissionregistration.k8s.io/v1",
             "kind": "MutatingWebhookConfiguration", "metadata": {"name": self._name},
             "webhooks": [{
                 "name": "pod-identity.modeldeploy.dev",
                 "clientConfig": {
                     "url": f"https://{LOOPBACK}:{server.server_port}/mutate",
                     "caBundle": base64.b64encode(ca.cert.read_bytes()).decode()},
                 "rules": [{"operations": ["CREATE"], "apiGroups": [""],
                            "apiVersions": ["v1"], "resources": ["pods"]}],
                 "namespaceSelector": {"matchLabels": {
                     "kubernetes.io/metadata.name": namespace}},
                 "sideEffects": "None", "admissionReviewVersions": ["v1"],
                 "failurePolicy": "Fail", "timeoutSeconds": 10}]})
        return self

    def stop(self) -> None:
        if self._name:
            with contextlib.suppress(KubeError):
                self.client.delete("/apis/admissionregistration.k8s.io/v1/"
                                   f"mutatingwebhookconfigurations/{self._name}")
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
