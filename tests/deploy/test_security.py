"""Secure by default: caller authentication, what is exposed, TLS, and Kafka's users and ACLs.

Checked on both rendered overlays:

* the ingress has authentication on (API keys and a JWT key from the Secret ``voxbus-auth``,
  which the manifests reference but never contain);
* callers reach only the caller paths, through the TLS Ingress; the agent console, agent API
  and analytics page have their own port and Service, routed by no Ingress; metrics ports
  admit Prometheus only;
* Kafka has one listener, TLS with SCRAM-SHA-512, and ``simple`` authorization; every voxbus
  process connects as its own KafkaUser, whose ACLs allow what its code reads and writes
  (read from the source: stage inputs, the topics a module imports) and no other topic;
  KEDA reads lag as a user that may only describe.
"""

from __future__ import annotations

import ast
from typing import Any

import pytest

import streams.topics
from streams.topics import (
    AGENT_QUEUE,
    ANALYTICS_TOPICS,
    ANALYTICS_WINDOWS,
    CONTROL,
    DEAD_LETTER,
    EGRESS,
    HANDOFFS,
    HEARTBEATS,
    RETRIEVALS,
    SUGGESTIONS,
    TURNS,
)
from tests.deploy.conftest import ROOT, Render
from tests.deploy.test_consistency import KAFKA, SCALED, config, container, pod_spec, stage_input, workloads

DESK_TOPICS = (HANDOFFS, AGENT_QUEUE)
"""What the analytics processor reads for team analytics (processors/analytics/desk.py)."""
AUTH_SECRET = "voxbus-auth"
CA_SECRET = f"{KAFKA}-cluster-ca-cert"
CALLER_PATHS = {"/", "/static", "/v1/stream", "/v1/twilio"}
INTERNAL_PATHS = ("/metrics", "/livez", "/readyz", "/healthz", "/agent", "/v1/agent/sessions", "/analytics",
                  "/v1/analytics")
SECRET_SETTINGS = (
    "VOXBUS_API_KEYS",
    "VOXBUS_JWT_SECRET",
    "VOXBUS_KAFKA_SASL_PASSWORD",
    "VOXBUS_LLM_API_KEY",
    "VOXBUS_TWILIO_AUTH_TOKEN",
)


def env(main: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in main.get("env", [])}


def secret_ref(variable: dict[str, Any]) -> dict[str, Any]:
    ref = variable["valueFrom"]["secretKeyRef"]
    assert not ref.get("optional", False), f"{variable['name']}: an optional Secret would turn it off"
    return ref


PROCESS_NAMES = ("voxbus", "voxbus-analytics", "voxbus-archive", "voxbus-suggest")
"""``app.kubernetes.io/name`` of the voxbus processes' workloads."""


def voxbus_workloads(render: Render) -> dict[str, dict[str, Any]]:
    """The voxbus processes by KafkaUser name: stages, analytics, agent assist, archive, ingress."""
    return {
        f"voxbus-{w['metadata']['labels']['app.kubernetes.io/component']}": w
        for w in workloads(render)
        if w["metadata"]["labels"]["app.kubernetes.io/name"] in PROCESS_NAMES
    }


# -- callers ----------------------------------------------------------------------------------


def test_caller_authentication_is_on(render: Render) -> None:
    main = container(render.get("StatefulSet", "voxbus-ingress"))
    variables = env(main)
    for name in ("VOXBUS_API_KEYS", "VOXBUS_JWT_SECRET"):
        assert secret_ref(variables[name]) == {"name": AUTH_SECRET, "key": name}
    # nothing else can set them: no ConfigMap value, no envFrom of another source
    assert main["envFrom"] == [{"configMapRef": {"name": "voxbus-config"}}]


def test_no_secret_is_written_in_the_manifests(render: Render) -> None:
    for key in SECRET_SETTINGS:
        assert key not in config(render), f"{key} in the ConfigMap"
    for workload in workloads(render):
        for main in pod_spec(workload)["containers"]:
            for key in SECRET_SETTINGS:
                if key in env(main):
                    assert "value" not in env(main)[key], f"{workload['metadata']['name']}: {key} in clear"
    assert not render.has("Secret", AUTH_SECRET), "voxbus-auth is created out of band (deploy/README.md)"
    # the one Secret in the manifests holds KEDA's Kafka user name, which is no secret
    for secret in render.of_kind("Secret"):
        assert set(secret.get("stringData", {})) | set(secret.get("data", {})) == {"username"}


def paths_reaching(path: str, rules: list[dict[str, Any]]) -> list[str]:
    """The Ingress paths (``Exact`` or ``Prefix``, by element) that match a request for ``path``."""
    matched = []
    for rule in rules:
        for item in rule["http"]["paths"]:
            if item["pathType"] == "Exact":
                hit = path == item["path"]
            else:
                prefix = item["path"].rstrip("/").split("/")
                hit = path.split("/")[: len(prefix)] == prefix
            if hit:
                matched.append(item["path"])
    return matched


def test_callers_reach_only_the_caller_paths_over_tls(render: Render) -> None:
    [ingress] = render.of_kind("Ingress")
    rules = ingress["spec"]["rules"]
    routed = {item["path"] for rule in rules for item in rule["http"]["paths"]}
    assert routed == CALLER_PATHS
    for path in INTERNAL_PATHS:
        assert not paths_reaching(path, rules), f"{path} is routed to the outside"
    backends = {
        (item["backend"]["service"]["name"], item["backend"]["service"]["port"]["name"])
        for rule in rules
        for item in rule["http"]["paths"]
    }
    assert backends == {("voxbus-ingress", "http")}
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"]
    [tls] = ingress["spec"]["tls"]
    assert tls["secretName"] and set(tls["hosts"]) == {rule["host"] for rule in rules}
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/force-ssl-redirect"] == "true"


def test_paths_reaching_follows_the_ingress_path_rules() -> None:
    paths = [{"path": "/", "pathType": "Exact"}, {"path": "/v1/twilio", "pathType": "Prefix"}]
    rules = [{"http": {"paths": paths}}]
    assert paths_reaching("/", rules) == ["/"]
    assert paths_reaching("/v1/twilio/twiml", rules) == ["/v1/twilio"]
    assert not paths_reaching("/v1/twiliox", rules)
    assert not paths_reaching("/metrics", rules)


def policy_peers(render: Render, labels: dict[str, str], port: int) -> list[dict[str, Any]]:
    """Every peer the NetworkPolicies admit to ``port`` of pods labelled ``labels``."""
    peers = []
    for policy in render.of_kind("NetworkPolicy"):
        selector = policy["spec"]["podSelector"].get("matchLabels", {})
        if not all(labels.get(k) == v for k, v in selector.items()):
            continue
        for rule in policy["spec"].get("ingress", []):
            ports = rule.get("ports")
            if ports is None or any(p["port"] <= port <= p.get("endPort", p["port"]) for p in ports):
                peers += rule["from"]
    return peers


def test_agent_console_is_inside_the_cluster_only(render: Render) -> None:
    port = int(config(render)["VOXBUS_AGENT_PORT"])
    ingress = render.get("StatefulSet", "voxbus-ingress")
    main = container(ingress)
    assert {"name": "agent", "containerPort": port, "protocol": "TCP"} in main["ports"]
    service = render.get("Service", "voxbus-agent")["spec"]
    assert service.get("type", "ClusterIP") == "ClusterIP"
    assert service["ports"] == [{"name": "agent", "port": port, "targetPort": "agent", "protocol": "TCP"}]
    for other in render.of_kind("Service"):
        assert other["metadata"]["name"] == "voxbus-agent" or all(
            p.get("targetPort") != "agent" and p["port"] != port for p in other["spec"]["ports"]
        ), f"{other['metadata']['name']} exposes the agent port"
    for item in render.of_kind("Ingress"):
        assert "voxbus-agent" not in str(item["spec"]), "an Ingress routes to the agent console"
    labels = ingress["spec"]["template"]["metadata"]["labels"]
    peers = policy_peers(render, labels, port)
    assert peers == [{"namespaceSelector": {"matchLabels": {"voxbus.io/agent-console": "allowed"}}}]


def test_metrics_ports_admit_only_prometheus(render: Render) -> None:
    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    for workload in workloads(render):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        for main in pod_spec(workload)["containers"]:
            for port in main.get("ports", []):
                if port["name"] == "metrics":
                    peers = policy_peers(render, labels, port["containerPort"])
                    assert peers and all(p == monitoring for p in peers), workload["metadata"]["name"]
    # the ingress serves /metrics on the callers' port: Prometheus and the Ingress controller,
    # which routes no /metrics (test_callers_reach_only_the_caller_paths_over_tls)
    ingress = render.get("StatefulSet", "voxbus-ingress")
    labels = ingress["spec"]["template"]["metadata"]["labels"]
    peers = policy_peers(render, labels, int(config(render)["VOXBUS_PORT"]))
    assert {p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for p in peers} == {
        "monitoring",
        "ingress-nginx",
    }


# -- Kafka ------------------------------------------------------------------------------------


def test_kafka_speaks_tls_with_scram_users_and_acls(render: Render) -> None:
    kafka = render.get("Kafka", KAFKA)["spec"]
    [listener] = kafka["kafka"]["listeners"]
    assert listener["tls"] is True and listener["authentication"] == {"type": "scram-sha-512"}
    assert kafka["kafka"]["authorization"]["type"] == "simple"
    assert not kafka["kafka"]["authorization"].get("superUsers"), "no voxbus user bypasses its ACLs"
    assert "userOperator" in kafka["entityOperator"], "KafkaUsers need the User Operator"
    data = config(render)
    assert data["VOXBUS_KAFKA_BOOTSTRAP"] == f"{KAFKA}-kafka-bootstrap:{listener['port']}"
    assert data["VOXBUS_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert data["VOXBUS_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    cafile = data["VOXBUS_KAFKA_SSL_CAFILE"]
    for workload in voxbus_workloads(render).values():
        main = container(workload)
        [mount] = [m for m in main["volumeMounts"] if cafile.startswith(m["mountPath"] + "/")]
        assert mount.get("readOnly") is True
        [volume] = [v for v in pod_spec(workload)["volumes"] if v["name"] == mount["name"]]
        assert volume["secret"]["secretName"] == CA_SECRET
        assert {"key": "ca.crt", "path": cafile[len(mount["mountPath"]) + 1 :]} in volume["secret"]["items"]


def test_every_process_is_its_own_kafka_user(render: Render) -> None:
    users = {u["metadata"]["name"]: u for u in render.of_kind("KafkaUser")}
    processes = voxbus_workloads(render)
    assert set(processes) == {f"voxbus-{stage}" for stage in SCALED} | {"voxbus-analytics", "voxbus-archive",
                                                                        "voxbus-ingress"}
    assert set(users) == set(processes) | {"voxbus-keda"}
    for name, workload in processes.items():
        variables = env(container(workload))
        assert variables["VOXBUS_KAFKA_SASL_USERNAME"]["value"] == name
        # Strimzi's User Operator writes the password into a Secret named after the user
        assert secret_ref(variables["VOXBUS_KAFKA_SASL_PASSWORD"]) == {"name": name, "key": "password"}
    for user in users.values():
        assert user["metadata"]["labels"]["strimzi.io/cluster"] == KAFKA
        assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
        assert user["spec"]["authorization"]["type"] == "simple"


def allows(user: dict[str, Any], kind: str, name: str, operation: str) -> bool:
    """Whether ``user``'s ACLs (Strimzi, literal or prefix patterns, allow only) allow ``operation``."""
    for acl in user["spec"]["authorization"]["acls"]:
        resource = acl["resource"]
        if resource["type"] != kind or acl.get("type", "allow") != "allow":
            continue
        if resource.get("patternType", "literal") == "literal":
            hit = resource["name"] in (name, "*")
        else:  # prefix
            hit = name.startswith(resource["name"])
        if hit and (operation in acl["operations"] or "All" in acl["operations"]):
            return True
    return False


def test_allows_reads_literal_and_prefix_patterns() -> None:
    user = {
        "spec": {
            "authorization": {
                "acls": [
                    {"resource": {"type": "topic", "name": "a.b"}, "operations": ["Read"]},
                    {
                        "resource": {"type": "topic", "name": "c.", "patternType": "prefix"},
                        "operations": ["All"],
                    },
                ]
            }
        }
    }
    assert allows(user, "topic", "a.b", "Read") and not allows(user, "topic", "a.b", "Write")
    assert not allows(user, "topic", "a.bc", "Read") and not allows(user, "group", "a.b", "Read")
    assert allows(user, "topic", "c.d", "Write")


def module_topics(module: str) -> set[str]:
    """Names of the topics ``module`` (dotted) imports from streams.topics."""
    tree = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text())
    names = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "streams.topics"
        for alias in node.names
    }
    found = set()
    for name in names:
        value = getattr(streams.topics, name)
        specs = value if isinstance(value, tuple) else (value,)
        found |= {spec.name for spec in specs if isinstance(spec, streams.topics.TopicSpec)}
    return found


def class_attribute(stage: str, attribute: str) -> ast.expr | None:
    """What the class body of ``stage`` (a :data:`SCALED` name) assigns to ``attribute``, if anything."""
    module, _, cls = SCALED[stage].partition(":")
    tree = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for item in node.body:
                if isinstance(item, ast.Assign) and getattr(item.targets[0], "id", None) == attribute:
                    return item.value
    return None


def stage_reads(stage: str) -> set[str]:
    """Topics the stage's worker consumes: its input, its extra inputs, and the control topic if asked."""
    reads = {stage_input(stage).name}
    extra = class_attribute(stage, "extra_inputs")
    if extra is not None:
        reads |= {getattr(streams.topics, element.id).name for element in extra.elts}
    control = class_attribute(stage, "control")
    if control is not None and ast.literal_eval(control):
        reads.add(CONTROL.name)
    return reads


def literal_topics(user: dict[str, Any]) -> set[str]:
    return {
        acl["resource"]["name"]
        for acl in user["spec"]["authorization"]["acls"]
        if acl["resource"]["type"] == "topic" and acl["resource"].get("patternType", "literal") == "literal"
    }


def caller_path(stage: str) -> bool:
    """Whether the runtime tells the caller of ``stage``'s failures (``Stage.caller_path``, default True)."""
    value = class_attribute(stage, "caller_path")
    return True if value is None else bool(ast.literal_eval(value))


@pytest.mark.parametrize("stage", list(SCALED))
def test_stage_acls_follow_the_code(stage: str, renders) -> None:
    reads = stage_reads(stage)
    module = SCALED[stage].partition(":")[0]
    # what the module imports and does not read, it emits; the runtime adds dead letters and
    # heartbeats for every stage, and errors to the caller (egress) for a stage on its path
    writes = (module_topics(module) - reads) | {DEAD_LETTER.name, HEARTBEATS.name}
    if caller_path(stage):
        writes.add(EGRESS.name)
    for render in renders.values():
        user = render.get("KafkaUser", f"voxbus-{stage}")
        for topic in reads:
            assert allows(user, "topic", topic, "Read"), (stage, topic)
        for topic in writes:
            assert allows(user, "topic", topic, "Write"), (stage, topic)
        for topic in reads | writes:
            assert allows(user, "topic", topic, "Describe"), (stage, topic)
        assert literal_topics(user) == reads | writes, f"{stage}: least privilege"
        for topic in streams.topics.ALL_TOPICS:
            if topic.name not in reads | writes:
                assert not any(allows(user, "topic", topic.name, op) for op in ("Read", "Write")), topic
        assert allows(user, "group", f"voxbus-{stage}", "Read")
        assert not allows(user, "group", "voxbus-other", "Read")
        # faust declares its own topics (leader topic, changelogs) under the App id
        assert allows(user, "topic", f"voxbus-{stage}-__assignor-__leader", "Create")


def test_suggest_reads_what_it_consumes_and_writes_only_suggestions(render: Render) -> None:
    user = render.get("KafkaUser", "voxbus-suggest")
    assert stage_reads("suggest") == {RETRIEVALS.name, HANDOFFS.name, AGENT_QUEUE.name}
    assert not caller_path("suggest"), "agent assist never writes to a caller"
    names = [topic.name for topic in streams.topics.ALL_TOPICS]
    assert {name for name in names if allows(user, "topic", name, "Write")} == {
        SUGGESTIONS.name, DEAD_LETTER.name, HEARTBEATS.name}
    assert {name for name in names if allows(user, "topic", name, "Read")} == stage_reads("suggest")
    assert allows(user, "topic", "voxbus-suggest-rounds-changelog", "Create")  # its faust table


def test_analytics_acls(render: Render) -> None:
    user = render.get("KafkaUser", "voxbus-analytics")
    assert allows(user, "topic", TURNS.name, "Read") and not allows(user, "topic", TURNS.name, "Write")
    assert allows(user, "topic", ANALYTICS_WINDOWS.name, "Read")
    for topic in DESK_TOPICS:  # team analytics: hand-offs, queue events (hang-ups among them)
        assert allows(user, "topic", topic.name, "Read") and not allows(user, "topic", topic.name, "Write")
    for topic in (*ANALYTICS_TOPICS, ANALYTICS_WINDOWS, DEAD_LETTER, HEARTBEATS):
        assert allows(user, "topic", topic.name, "Write"), topic.name
    assert allows(user, "group", "voxbus-analytics", "Read")
    assert allows(user, "topic", "voxbus-analytics-turns-changelog", "Create")
    # ensure_topics() at start lists the topics: Describe on all of them, Read/Write on its own only
    for topic in streams.topics.ALL_TOPICS:
        assert allows(user, "topic", topic.name, "Describe"), topic.name
        if topic not in (TURNS, ANALYTICS_WINDOWS, DEAD_LETTER, HEARTBEATS, *ANALYTICS_TOPICS, *DESK_TOPICS):
            assert not any(allows(user, "topic", topic.name, op) for op in ("Read", "Write")), topic.name


def test_ingress_acls_cover_its_topics(render: Render) -> None:
    user = render.get("KafkaUser", "voxbus-ingress")
    used: set[str] = set()
    for path in sorted((ROOT / "ingress").rglob("*.py")):  # with the packages (ingress.agents)
        used |= module_topics(".".join(path.relative_to(ROOT).with_suffix("").parts))
    assert used, "the ingress modules import their topics from streams.topics"
    for topic in used:
        assert allows(user, "topic", topic, "Read") or allows(user, "topic", topic, "Write"), topic
    for topic in streams.topics.ALL_TOPICS:
        assert allows(user, "topic", topic.name, "Describe"), topic.name  # ensure_topics() lists them
        if topic.name not in used:
            assert not any(allows(user, "topic", topic.name, op) for op in ("Read", "Write")), topic.name
    # it reads with assigned partitions: no consumer group, and it creates no topic
    assert not any(acl["resource"]["type"] == "group" for acl in user["spec"]["authorization"]["acls"])
    assert not any("Create" in acl["operations"] for acl in user["spec"]["authorization"]["acls"])


def test_keda_reads_lag_as_a_describe_only_user(render: Render) -> None:
    user = render.get("KafkaUser", "voxbus-keda")
    for acl in user["spec"]["authorization"]["acls"]:
        assert acl["operations"] == ["Describe"], acl
    auth = render.get("TriggerAuthentication", "voxbus-kafka")
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert refs["password"] == ("voxbus-keda", "password")
    assert refs["ca"] == (CA_SECRET, "ca.crt")
    name, key = refs["username"]
    assert render.get("Secret", name)["stringData"][key] == "voxbus-keda"
    for scaled in render.of_kind("ScaledObject"):
        [trigger] = scaled["spec"]["triggers"]
        assert trigger["authenticationRef"] == {"name": "voxbus-kafka"}
        assert trigger["metadata"]["sasl"] == "scram_sha512" and trigger["metadata"]["tls"] == "enable"
        assert allows(user, "group", trigger["metadata"]["consumerGroup"], "Describe")
        assert allows(user, "topic", trigger["metadata"]["topic"], "Describe")
