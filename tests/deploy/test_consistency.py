"""The manifests agree with the code: topics, consumer groups, ports, settings, wiring.

Names and numbers that live in two places (streams/topics.py and the KafkaTopics, the faust
App ids and the KEDA triggers, the metrics ports and the probes...) are compared here, for
both overlays, so that a change on one side fails a test instead of a deployment.
"""

from __future__ import annotations

import ast
import re
from typing import Any
from urllib.parse import urlsplit

import streams.topics
from processors.runtime import STAGES
from streams.app import group_id
from streams.topics import ALL_TOPICS, EGRESS, TopicSpec
from tests.deploy.conftest import ROOT, Render, made_image

SCALED: dict[str, str] = {**STAGES, "suggest": "processors.generation.suggest:SuggestStage"}
"""Every faust worker KEDA scales on its consumer group's lag, name -> ``module:class``: the pipeline's
stages, and agent assist (``voxbus suggest``, deploy/k8s/base/stages/suggest.yaml)."""
NAMESPACE = "voxbus"
KAFKA = "voxbus"
CHANGELOG = "voxbus-generation-history-changelog"
CONFIGMAP = "voxbus-config"


def stage_input(stage: str) -> TopicSpec:
    """The ``input`` topic of ``stage``'s class (a :data:`SCALED` name), from its source (no model import)."""
    module, _, cls = SCALED[stage].partition(":")
    tree = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for item in node.body:
                if (
                    isinstance(item, ast.Assign)
                    and len(item.targets) == 1
                    and getattr(item.targets[0], "id", None) == "input"
                    and isinstance(item.value, ast.Name)
                ):
                    return getattr(streams.topics, item.value.id)
    raise AssertionError(f"no `input = TOPIC` in {SCALED[stage]}")


def config(render: Render) -> dict[str, str]:
    return render.get("ConfigMap", CONFIGMAP)["data"]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = pod_spec(workload)["containers"]
    assert len(containers) == 1
    return containers[0]


def quantity(value: str | int | float) -> float:
    """A Kubernetes quantity as a number (cores, bytes)."""
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value))
    assert match, value
    return float(match[1]) * units.get(match[2], 1)


def port_number(container: dict[str, Any], port: str | int) -> int:
    if isinstance(port, int):
        return port
    [number] = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return number


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def workloads(render: Render) -> list[dict[str, Any]]:
    return render.of_kind("Deployment") + render.of_kind("StatefulSet")


# -- topics -----------------------------------------------------------------------------------


def test_a_kafka_topic_per_declared_topic(render: Render, default_settings) -> None:
    topics = {t["metadata"]["name"]: t for t in render.of_kind("KafkaTopic")}
    assert set(topics) == {spec.name for spec in ALL_TOPICS} | {CHANGELOG}
    for spec in ALL_TOPICS:
        topic = topics[spec.name]
        assert topic["spec"].get("topicName", spec.name) == spec.name
        assert topic["spec"]["partitions"] == spec.partitions(default_settings), spec.name
        assert int(topic["spec"]["config"]["retention.ms"]) == spec.retention_ms, spec.name
        assert topic["spec"]["config"]["cleanup.policy"] == spec.cleanup_policy, spec.name
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == KAFKA
    changelog = topics[CHANGELOG]["spec"]
    assert changelog["partitions"] == default_settings.partitions
    assert changelog["config"]["cleanup.policy"] == "compact"
    # the partition counts the processes are told about
    assert int(config(render)["VOXBUS_PARTITIONS"]) == default_settings.partitions == 8
    assert int(config(render)["VOXBUS_EGRESS_PARTITIONS"]) == default_settings.egress_partitions == 4
    assert topics[EGRESS.name]["spec"]["partitions"] == 4
    assert topics["voxbus.heartbeats"]["spec"]["partitions"] == 1


def test_replication_fits_the_brokers(render: Render) -> None:
    pools = [
        p for p in render.of_kind("KafkaNodePool") if p["metadata"]["labels"]["strimzi.io/cluster"] == KAFKA
    ]
    brokers = sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"])
    controllers = [p["spec"]["replicas"] for p in pools if "controller" in p["spec"]["roles"]]
    assert sum(controllers) % 2 == 1, "a KRaft quorum needs an odd number of controllers"
    factor = int(config(render)["VOXBUS_REPLICATION_FACTOR"])
    kafka_config = render.get("Kafka", KAFKA)["spec"]["kafka"]["config"]
    assert kafka_config["default.replication.factor"] == factor <= brokers
    assert kafka_config["offsets.topic.replication.factor"] <= brokers
    assert kafka_config["min.insync.replicas"] <= factor
    for topic in render.of_kind("KafkaTopic"):
        assert topic["spec"]["replicas"] == factor, topic["metadata"]["name"]


def test_kraft_with_node_pools(render: Render) -> None:
    kafka = render.get("Kafka", KAFKA)
    assert kafka["metadata"]["annotations"] == {
        "strimzi.io/node-pools": "enabled",
        "strimzi.io/kraft": "enabled",
    }
    assert "zookeeper" not in kafka["spec"]
    assert "topicOperator" in kafka["spec"]["entityOperator"], "KafkaTopics need the Topic Operator"
    assert kafka["spec"]["kafka"]["config"]["auto.create.topics.enable"] is False


# -- stages -----------------------------------------------------------------------------------


def test_stage_inputs_follow_the_pipeline() -> None:
    assert [stage_input(stage).name for stage in STAGES] == [
        "voxbus.audio",
        "voxbus.utterances",
        "voxbus.transcripts",
        "voxbus.intents",
        "voxbus.retrievals",
        "voxbus.replies",
        "voxbus.tool-calls",  # the workflow stage, after the pipeline
    ]


def test_a_workload_per_stage(render: Render, default_settings) -> None:
    base_port = int(config(render)["VOXBUS_METRICS_BASE_PORT"])
    assert base_port == default_settings.metrics_base_port == 9400
    assert config(render)["VOXBUS_HOST"] == "0.0.0.0", (
        "probes and Prometheus reach /metrics from outside the pod"
    )
    stage_deployments = [
        d
        for d in render.of_kind("Deployment")
        if d["metadata"]["labels"].get("app.kubernetes.io/name") == "voxbus"
    ]
    assert {d["metadata"]["name"] for d in stage_deployments} == {f"voxbus-{stage}" for stage in STAGES}
    for index, stage in enumerate(STAGES):
        deployment = render.get("Deployment", f"voxbus-{stage}")
        main = container(deployment)
        assert main["command"] + main["args"] == ["voxbus", "worker", stage]
        assert {"configMapRef": {"name": CONFIGMAP}} in main["envFrom"]
        [metrics] = [p for p in main["ports"] if p["name"] == "metrics"]
        assert metrics["containerPort"] == base_port + index, stage
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            check = main[probe]["httpGet"]
            assert check["path"] == "/metrics" and port_number(main, check["port"]) == base_port + index, (
                stage,
                probe,
            )
        service = render.get("Service", f"voxbus-{stage}")
        assert selects(service["spec"]["selector"], deployment["spec"]["template"]["metadata"]["labels"])
        [service_port] = service["spec"]["ports"]
        assert service_port["port"] == base_port + index
        assert port_number(main, service_port["targetPort"]) == base_port + index
        assert "replicas" not in deployment["spec"], "KEDA owns the replica count"


def test_suggest_workload(render: Render, default_settings) -> None:
    """Agent assist runs `voxbus suggest`, serves /metrics where the code does, and may reach the LLM."""
    from processors.generation.suggest import metrics_port

    deployment = render.get("Deployment", "voxbus-suggest")
    main = container(deployment)
    assert main["command"] + main["args"] == ["voxbus", "suggest"]
    assert {"configMapRef": {"name": CONFIGMAP}} in main["envFrom"]
    port = metrics_port(default_settings)
    assert port == int(config(render)["VOXBUS_METRICS_BASE_PORT"]) + len(STAGES) + 1
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        check = main[probe]["httpGet"]
        assert check["path"] == "/metrics" and port_number(main, check["port"]) == port, probe
    [service_port] = render.get("Service", "voxbus-suggest")["spec"]["ports"]
    assert service_port["port"] == port == port_number(main, service_port["targetPort"])
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    llm = [p for p in render.of_kind("NetworkPolicy") if p["metadata"]["name"] == "allow-llm-from-generation"]
    [rule] = llm[0]["spec"]["ingress"]
    admitted = [peer["podSelector"]["matchLabels"] for peer in rule["from"]]
    assert any(selects(peer, labels) for peer in admitted), "the suggest pods cannot reach the LLM"
    assert [peer["app.kubernetes.io/component"] for peer in admitted] == ["generation", "suggest"]


def test_keda_scales_each_stage_on_its_consumer_group_lag(render: Render, default_settings) -> None:
    objects = {s["spec"]["scaleTargetRef"]["name"]: s for s in render.of_kind("ScaledObject")}
    assert set(objects) == {f"voxbus-{stage}" for stage in SCALED}
    topics = {t["metadata"]["name"]: t["spec"]["partitions"] for t in render.of_kind("KafkaTopic")}
    [listener] = render.get("Kafka", KAFKA)["spec"]["kafka"]["listeners"]
    for stage in SCALED:
        scaled = objects[f"voxbus-{stage}"]["spec"]
        assert scaled["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
        [trigger] = scaled["triggers"]
        meta = trigger["metadata"]
        assert trigger["type"] == "kafka"
        assert meta["consumerGroup"] == group_id(stage) == f"voxbus-{stage}"
        topic = stage_input(stage)
        assert meta["topic"] == topic.name
        partitions = topic.partitions(default_settings)
        assert topics[topic.name] == partitions
        assert 1 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"] <= partitions, stage
        # KEDA's operator runs in its own namespace: the bootstrap address must be qualified
        assert meta["bootstrapServers"] == f"{KAFKA}-kafka-bootstrap.{NAMESPACE}.svc:{listener['port']}"
        assert int(meta["lagThreshold"]) > 0 and int(meta["activationLagThreshold"]) >= 0
        assert meta["offsetResetPolicy"] == "earliest"  # as faust (streams/app.py)
        assert meta.get("allowIdleConsumers", "false") == "false"


def test_graceful_shutdown(render: Render) -> None:
    for workload in workloads(render):
        name = workload["metadata"]["name"]
        main = pod_spec(workload)["containers"][0]
        stop = main.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds")
        grace = pod_spec(workload).get("terminationGracePeriodSeconds", 30)
        if workload["metadata"]["labels"].get("app.kubernetes.io/name") == "voxbus":
            assert stop is not None, f"{name}: no preStop"
        assert stop is None or grace > stop, f"{name}: the grace period must outlast the preStop"


def test_resources_are_bounded(render: Render) -> None:
    for workload in workloads(render):
        for main in pod_spec(workload)["containers"]:
            name = f"{workload['metadata']['name']}/{main['name']}"
            requests, limits = main["resources"]["requests"], main["resources"]["limits"]
            for resource in ("cpu", "memory"):
                assert quantity(requests[resource]) <= quantity(limits[resource]), (name, resource)


# -- ingress ----------------------------------------------------------------------------------


def test_ingress_reads_the_egress_partition_of_its_ordinal(render: Render, default_settings) -> None:
    ingress = render.get("StatefulSet", "voxbus-ingress")
    main = container(ingress)
    assert main["command"] + main["args"] == ["voxbus", "ingress"]
    slot = next(e for e in main["env"] if e["name"] == "VOXBUS_INGRESS_SLOT")
    assert slot["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['apps.kubernetes.io/pod-index']"
    egress = render.get("KafkaTopic", EGRESS.name)["spec"]["partitions"]
    assert 1 <= ingress["spec"]["replicas"] <= egress == default_settings.egress_partitions
    port = int(config(render)["VOXBUS_PORT"])
    assert port == default_settings.port == 8765
    assert port_number(main, main["readinessProbe"]["httpGet"]["port"]) == port
    assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"  # its own readiness, not the stages'
    assert main["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert render.get("Service", ingress["spec"]["serviceName"])["spec"]["clusterIP"] == "None"
    assert ingress["spec"]["podManagementPolicy"] == "Parallel"


# -- settings and service wiring --------------------------------------------------------------


PENDING_SETTINGS: frozenset[str] = frozenset()
"""Settings the manifests set that streams/settings.py does not define yet (none now: VOXBUS_AGENT_PORT
is one). Remove each name once it is a setting (test_pending_settings_are_still_pending)."""


def voxbus_variables(render: Render) -> set[str]:
    """Every VOXBUS_* variable the ConfigMap or a container sets."""
    names = {key for key in config(render) if key.startswith("VOXBUS_")}
    for workload in workloads(render):
        for main in pod_spec(workload)["containers"]:
            names |= {e["name"] for e in main.get("env", []) if e["name"].startswith("VOXBUS_")}
    return names


def test_configmap_is_made_of_settings(render: Render) -> None:
    from streams.settings import Settings

    for key in voxbus_variables(render) - PENDING_SETTINGS:
        assert key[len("VOXBUS_") :].lower() in Settings.model_fields, f"{key} is not a voxbus setting"
    Settings.model_validate(
        {k[len("VOXBUS_") :].lower(): v for k, v in config(render).items() if k.startswith("VOXBUS_")}
    )


def test_pending_settings_are_still_pending(renders) -> None:
    from streams.settings import Settings

    implemented = {key for key in PENDING_SETTINGS if key[len("VOXBUS_") :].lower() in Settings.model_fields}
    assert not implemented, f"now settings: remove {sorted(implemented)} from PENDING_SETTINGS"
    assert all(voxbus_variables(render) >= PENDING_SETTINGS for render in renders.values())


def service_port(render: Render, url_host: str, port: int) -> dict[str, Any]:
    service = render.get("Service", url_host)
    assert any(p["port"] == port for p in service["spec"]["ports"]), (url_host, port)
    backends = [
        w
        for w in workloads(render)
        if selects(service["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"])
    ]
    assert len(backends) == 1, url_host
    return backends[0]


def test_stages_find_their_servers(render: Render) -> None:
    data = config(render)
    [listener] = render.get("Kafka", KAFKA)["spec"]["kafka"]["listeners"]
    assert data["VOXBUS_KAFKA_BOOTSTRAP"] == f"{KAFKA}-kafka-bootstrap:{listener['port']}"
    qdrant = urlsplit(data["VOXBUS_QDRANT_URL"])
    assert service_port(render, qdrant.hostname, qdrant.port)["metadata"]["name"] == "qdrant"
    llm = urlsplit(data["VOXBUS_LLM_URL"])
    assert llm.path == "/v1"
    server = container(service_port(render, llm.hostname, llm.port))
    words = " ".join(server.get("command", []) + server.get("args", []))
    assert re.search(rf"(--served-model-name[= ]|--alias ){re.escape(data['VOXBUS_LLM_MODEL'])}\b", words)


def test_gpu_only_in_prod(renders) -> None:
    def gpus(render: Render) -> int:
        return sum(
            int(c["resources"].get("limits", {}).get("nvidia.com/gpu", 0))
            for w in workloads(render)
            for c in pod_spec(w)["containers"]
        )

    assert gpus(renders["dev"]) == 0
    vllm = container(renders["prod"].get("Deployment", "vllm"))
    assert vllm["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert vllm["args"][0] != "HuggingFaceTB/SmolLM2-135M-Instruct", "prod serves a larger model"
    assert renders["prod"].get("Deployment", "vllm")["spec"]["replicas"] >= 2
    assert config(renders["prod"])["VOXBUS_LLM_URL"] == "http://vllm:8000/v1"


def test_every_object_in_the_namespace(render: Render) -> None:
    for resource in render.resources:
        if resource["kind"] != "Namespace":
            assert resource["metadata"].get("namespace") == NAMESPACE, resource["metadata"]["name"]
    assert render.get("Namespace", NAMESPACE)


def test_one_voxbus_image(render: Render) -> None:
    """Every voxbus container runs the image `make image` builds (name and tag)."""
    image = made_image()
    repository = image.rpartition(":")[0]
    images = {
        c["image"]
        for w in workloads(render)
        for c in pod_spec(w)["containers"] + pod_spec(w).get("initContainers", [])
        if c["image"].startswith(repository.rpartition("/")[0] + "/")
    }
    assert images == {image}
    voxbus = [w for w in workloads(render) if w["metadata"]["name"].startswith("voxbus-")]
    assert voxbus and all(container(w)["image"] == image for w in voxbus)


# -- availability and monitoring --------------------------------------------------------------


def test_every_workload_has_a_pdb_and_a_service_monitor(render: Render) -> None:
    pdbs = render.of_kind("PodDisruptionBudget")
    monitors = render.of_kind("ServiceMonitor")
    services = render.of_kind("Service")
    for workload in workloads(render):
        name = workload["metadata"]["name"]
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert sum(selects(p["spec"]["selector"]["matchLabels"], labels) for p in pdbs) == 1, f"{name}: PDB"
        scraped = [
            s
            for s in services
            if selects(s["spec"]["selector"], labels)
            and any(selects(m["spec"]["selector"]["matchLabels"], s["metadata"]["labels"]) for m in monitors)
        ]
        assert len(scraped) == 1, f"{name}: exactly one scraped Service"
    for monitor in monitors:
        matched = [
            s
            for s in services
            if selects(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
        ]
        assert matched, monitor["metadata"]["name"]
        for endpoint in monitor["spec"]["endpoints"]:
            for service in matched:
                assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}


def test_services_select_pods(render: Render) -> None:
    templates = [w["spec"]["template"]["metadata"]["labels"] for w in workloads(render)]
    for service in render.of_kind("Service"):
        selector = service["spec"]["selector"]
        if selector.get("strimzi.io/cluster") == KAFKA:
            continue  # pods created by the Strimzi operator
        assert any(selects(selector, labels) for labels in templates), service["metadata"]["name"]


OPEN_NAMESPACES = (
    {"kubernetes.io/metadata.name": "monitoring"},  # Prometheus
    {"kubernetes.io/metadata.name": "keda"},  # KEDA's operator, on Kafka
    {"kubernetes.io/metadata.name": "ingress-nginx"},  # the Ingress controller, on the callers' port
    {"voxbus.io/agent-console": "allowed"},  # namespaces an operator opens the agent console to
)


def test_nothing_is_open_to_everyone(render: Render) -> None:
    policies = render.of_kind("NetworkPolicy")
    deny = [p for p in policies if p["spec"]["podSelector"] == {} and "ingress" not in p["spec"]]
    assert deny and deny[0]["spec"]["policyTypes"] == ["Ingress"]
    for policy in policies:
        name = policy["metadata"]["name"]
        for rule in policy["spec"].get("ingress", []):
            assert rule.get("from"), f"{name}: a rule without `from` admits every source"
            for peer in rule["from"]:
                assert "ipBlock" not in peer, name
                namespaces = peer.get("namespaceSelector", {}).get("matchLabels", {})
                if "namespaceSelector" in peer:
                    assert namespaces in OPEN_NAMESPACES, name
                    assert "podSelector" not in peer or peer["podSelector"], name
