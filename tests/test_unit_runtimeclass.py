"""The chapter's RuntimeClass manifest, checked against Kubernetes' own schema.

Chapter "From one machine to a cluster" (chapters/cluster.md) gives a
RuntimeClass that would run pods with mini-runc on a real cluster's nodes.
`kubectl apply --dry-run=client -f` cannot check it here: even a client
dry run asks an API server for its resource list and schema, and this
machine has no cluster (Debian 12's kubernetes-client would ask the same).
So the manifest is checked the way the API server would check its shape:
against the RuntimeClass schema of Kubernetes' OpenAPI document (vendored,
trimmed, in third_party/kubernetes-openapi), unknown fields refused as
`kubectl --validate=strict` does, plus the name rules the schema does not
carry (RFC 1123 names), and against the containerd config that defines the
handler it names.
"""

from __future__ import annotations

import copy
import json
import re
import tomllib
from typing import Any

import pytest
import yaml
from conftest import REPO

pytestmark = pytest.mark.unit

MANIFEST = REPO / "chapters" / "cluster" / "runtimeclass.yaml"
HANDLER_CONFIG = REPO / "chapters" / "cluster" / "containerd-mini-runc.toml"
SCHEMAS = json.loads((REPO / "third_party" / "kubernetes-openapi" / "runtimeclass.json").read_text())["schemas"]
RUNTIME_CLASS = "io.k8s.api.node.v1.RuntimeClass"

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")  # RFC 1123 label
DNS_SUBDOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^(?=.{1,63}$)[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
JSON_TYPES = {"object": dict, "array": list, "string": str, "integer": int, "boolean": bool}


def schema_errors(value: Any, schema: dict[str, Any], where: str = "") -> list[str]:
    """What in ``value`` the OpenAPI ``schema`` refuses, one line each."""
    if "$ref" in schema:
        schema = SCHEMAS[schema["$ref"].rsplit("/", 1)[1]]
    kind = schema.get("type")
    if kind and (not isinstance(value, JSON_TYPES[kind]) or (kind == "integer" and isinstance(value, bool))):
        return [f"{where or '.'}: expected {kind}, got {type(value).__name__} {value!r}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} is not one of {schema['enum']}"]
    errors = []
    if kind == "object":
        properties = schema.get("properties")
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{where}.{key}: required")
        for key, item in value.items():
            if properties is not None and key in properties:
                errors += schema_errors(item, properties[key], f"{where}.{key}")
            elif "additionalProperties" in schema:
                errors += schema_errors(item, schema["additionalProperties"], f"{where}.{key}")
            elif properties is not None:
                errors.append(f"{where}.{key}: unknown field")
    if kind == "array":
        for i, item in enumerate(value):
            errors += schema_errors(item, schema.get("items", {}), f"{where}[{i}]")
    return errors


def runtime_class_errors(manifest: dict[str, Any]) -> list[str]:
    """The schema's errors, then what the API server's validation adds to it."""
    errors = schema_errors(manifest, SCHEMAS[RUNTIME_CLASS])
    (gvk,) = SCHEMAS[RUNTIME_CLASS]["x-kubernetes-group-version-kind"]
    if (manifest.get("apiVersion"), manifest.get("kind")) != (f"{gvk['group']}/{gvk['version']}", gvk["kind"]):
        errors.append(f".apiVersion, .kind: not {gvk['group']}/{gvk['version']} {gvk['kind']}")
    name = manifest.get("metadata", {}).get("name", "")
    if not DNS_SUBDOMAIN.match(str(name)):
        errors.append(f".metadata.name: {name!r} is not a DNS subdomain (RFC 1123)")
    handler = manifest.get("handler", "")
    if not DNS_LABEL.match(str(handler)):
        errors.append(f".handler: {handler!r} is not a DNS label (RFC 1123)")
    for key in manifest.get("scheduling", {}).get("nodeSelector", {}):
        prefix, _, label = str(key).rpartition("/")
        if (prefix and not DNS_SUBDOMAIN.match(prefix)) or not LABEL_NAME.match(label):
            errors.append(f".scheduling.nodeSelector: {key!r} is not a label key")
    return errors


def manifest() -> dict[str, Any]:
    return yaml.safe_load(MANIFEST.read_text())


def test_the_manifest_is_a_valid_runtime_class() -> None:
    assert runtime_class_errors(manifest()) == []


def test_its_handler_is_the_one_containerd_is_given() -> None:
    config = tomllib.loads(HANDLER_CONFIG.read_text())
    runtimes = config["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]
    assert list(runtimes) == [manifest()["handler"]]
    assert runtimes["mini-runc"]["runtime_type"] == "io.containerd.runc.v2"


@pytest.mark.parametrize(("change", "error"), [
    pytest.param(lambda m: m.update(handlr=m.pop("handler")), ".handler: required", id="misspelt-field"),
    pytest.param(lambda m: m.update(handler="Mini_Runc"), ".handler: 'Mini_Runc' is not a DNS label (RFC 1123)",
                 id="handler-not-a-label"),
    pytest.param(lambda m: m.update(apiVersion="node.k8s.io/v1beta2"),
                 ".apiVersion, .kind: not node.k8s.io/v1 RuntimeClass", id="other-api-version"),
    # YAML's unquoted true is a boolean; a label value is a string.
    pytest.param(lambda m: m["scheduling"]["nodeSelector"].update({"workbench.example/mini-runc": True}),
                 ".scheduling.nodeSelector.workbench.example/mini-runc: expected string, got bool True",
                 id="boolean-label-value"),
    pytest.param(lambda m: m["scheduling"].update(tolerations=[{"key": "x", "operator": "Maybe"}]),
                 ".scheduling.tolerations[0].operator: 'Maybe' is not one of ['Equal', 'Exists']",
                 id="toleration-operator"),
    pytest.param(lambda m: m["scheduling"].update(nodeSelektor={}), ".scheduling.nodeSelektor: unknown field",
                 id="unknown-field"),
])
def test_the_check_refuses_what_the_api_server_would(change: Any, error: str) -> None:
    broken = copy.deepcopy(manifest())
    change(broken)
    assert error in runtime_class_errors(broken)
