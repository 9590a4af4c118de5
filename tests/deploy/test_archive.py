"""The archive's manifests agree with its code: command, volume, settings, port, Kafka user and ACLs."""

from __future__ import annotations

from processors.archive.reader import archived_topics
from processors.archive.writer import GROUP
from streams.settings import Settings
from streams.topics import ALL_TOPICS
from tests.deploy.test_consistency import config, container, pod_spec, port_number, quantity
from tests.deploy.test_security import allows, env


def test_archive_is_a_statefulset_writing_to_its_volume(render) -> None:
    archive = render.get("StatefulSet", "voxbus-archive")
    main = container(archive)
    assert main["command"] + main["args"] == ["voxbus", "archive"]
    assert archive["spec"]["replicas"] == 1, "every file on one volume"
    variables = {e["name"]: e.get("value") for e in main["env"]}
    settings = Settings.model_validate(
        {k[len("VOXBUS_"):].lower(): v for k, v in {**config(render), **variables}.items()
         if k.startswith("VOXBUS_") and v is not None})
    [claim] = archive["spec"]["volumeClaimTemplates"]
    [mount] = [m for m in main["volumeMounts"] if m["name"] == claim["metadata"]["name"]]
    assert str(settings.archive_dir) == mount["mountPath"]
    assert settings.archive_max_bytes < quantity(claim["spec"]["resources"]["requests"]["storage"])
    assert port_number(main, "metrics") == settings.archive_metrics_port
    assert port_number(main, main["readinessProbe"]["httpGet"]["port"]) == settings.archive_metrics_port
    assert render.get("Service", archive["spec"]["serviceName"])
    assert pod_spec(archive)["securityContext"]["fsGroup"], "the volume is writable by the process"


def test_archive_acls_read_what_it_archives_and_write_nothing(render) -> None:
    user = render.get("KafkaUser", GROUP)
    main = container(render.get("StatefulSet", "voxbus-archive"))
    assert env(main)["VOXBUS_KAFKA_SASL_USERNAME"]["value"] == GROUP
    archived = set(archived_topics(Settings()))
    for topic in ALL_TOPICS:
        assert allows(user, "topic", topic.name, "Read") == (topic.name in archived), topic.name
        assert not allows(user, "topic", topic.name, "Write"), topic.name
    assert allows(user, "group", GROUP, "Read")
