"""The Kubernetes manifests (deploy/k8s and its overlay): valid, and true to what the broker really does.

Everything here is offline: kustomize renders through ``kubectl kustomize`` (client side
only), kubernetes-validate checks against the JSON schemas it ships, and the only
network traffic is an embedded broker on 127.0.0.1.
"""

from __future__ import annotations

import copy
import http.client
import json
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

import fabric
from broker import Broker, BrokerConfig
from broker.cli import build_parser
from broker.command import main as logfabric_main
from broker.config import ENV_PREFIX, parse_http

yaml = pytest.importorskip("yaml", reason="PyYAML not installed: cannot parse the manifests (pip install pyyaml)")

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
BASE_DIR = ROOT / "deploy" / "k8s"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"

#: The namespace the tests imagine the manifests applied to (they set none themselves).
NAMESPACE = "logging"
#: BrokerConfig fields that name an endpoint the broker binds, by container port name.
BOUND_ENDPOINTS = {"pub-ingest": "pub_ingest", "push-ingest": "push_ingest", "egress": "egress", "history": "history"}


# --------------------------------------------------------------------------- helpers


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The one manifest of ``kind`` (and ``name``); fails if there is none or several."""
    hits = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(hits) == 1, f"expected one {kind} {name or ''}, found {len(hits)}"
    return hits[0]


def workload(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return find(docs, "StatefulSet", "logfabric")


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = workload(docs)["spec"]["template"]["spec"]
    return spec


def broker_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = pod_spec(docs)["containers"]
    assert [c["name"] for c in containers] == ["broker"], "the pod should run the broker container alone"
    return dict(containers[0])


def container_ports(container: dict[str, Any]) -> dict[str, int]:
    """containerPort by port name."""
    return {p["name"]: int(p["containerPort"]) for p in container["ports"]}


def configmap_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    """The ConfigMap the container takes with envFrom, as the environment variables it becomes."""
    refs = [e["configMapRef"]["name"] for e in broker_container(docs).get("envFrom", []) if "configMapRef" in e]
    assert refs == ["logfabric-broker"], f"the container should take exactly the broker ConfigMap, got {refs}"
    return {k: str(v) for k, v in find(docs, "ConfigMap", refs[0])["data"].items()}


def loaded_config(docs: list[dict[str, Any]]) -> BrokerConfig:
    return BrokerConfig.load(env=configmap_env(docs))


def tcp_port(endpoint: str) -> int:
    """The port of ``tcp://HOST:PORT``."""
    match = re.fullmatch(r"tcp://(?:\[[^\]]*\]|[^:/]+):(\d+)", endpoint)
    assert match, f"{endpoint!r} is not a tcp://HOST:PORT endpoint with a fixed port"
    return int(match.group(1))


def tcp_host(endpoint: str) -> str:
    return endpoint[len("tcp://") :].rpartition(":")[0].strip("[]")


def prestop_seconds(container: dict[str, Any]) -> float:
    """How long the preStop hook sleeps: ``exec: [.../sleep, N]`` or the native ``sleep`` action."""
    hook = container["lifecycle"]["preStop"]
    if "sleep" in hook:
        return float(hook["sleep"]["seconds"])
    command = hook["exec"]["command"]
    assert len(command) == 2 and Path(command[0]).name == "sleep", f"preStop should be a plain sleep, got {command}"
    return float(command[1])


def selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels and matchExpressions) against a set of labels; {} matches everything."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def ingress_ports(
    policy: dict[str, Any], container: dict[str, Any], pod_labels: dict[str, str], namespace: str
) -> set[int]:
    """The TCP ports a pod (its labels, its namespace) may reach on the selected pods under ``policy``.

    A small NetworkPolicy evaluator for pod and namespace selectors, enough for this
    policy: peers without a namespaceSelector are in the policy's own namespace,
    namespaces carry the automatic ``kubernetes.io/metadata.name`` label.
    """
    named = container_ports(container)
    all_ports = set(named.values())
    namespace_labels = {"kubernetes.io/metadata.name": namespace}
    allowed: set[int] = set()
    for rule in policy["spec"].get("ingress") or []:
        peers = rule.get("from")
        if peers is not None:
            matched = False
            for peer in peers:
                assert "ipBlock" not in peer, "the evaluator does not model ipBlock peers"
                ns_selector = peer.get("namespaceSelector")
                ns_ok = (
                    namespace == NAMESPACE if ns_selector is None else selector_matches(ns_selector, namespace_labels)
                )
                pod_ok = selector_matches(peer.get("podSelector") or {}, pod_labels)
                matched = matched or (ns_ok and pod_ok)
            if not matched:
                continue
        if rule.get("ports") is None:
            allowed |= all_ports
            continue
        for port in rule["ports"]:
            assert port.get("protocol", "TCP") == "TCP" and "endPort" not in port
            allowed.add(named[port["port"]] if isinstance(port["port"], str) else int(port["port"]))
    return allowed


def http_get(address: str, path: str) -> int:
    """The status of ``GET path`` on ``HOST:PORT`` (127.0.0.1 only)."""
    host, port = parse_http(address)
    assert host == "127.0.0.1"
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def dockerfile_instruction(name: str) -> str:
    """The argument of the last ``NAME`` instruction of deploy/Dockerfile (the final stage's)."""
    values = [line.split(None, 1)[1].strip() for line in DOCKERFILE.read_text().splitlines() if line.startswith(name)]
    assert values, f"deploy/Dockerfile has no {name}"
    return values[-1]


# --------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def validator() -> Any:
    """The kubernetes_validate module, or a skip when it is not installed."""
    return pytest.importorskip(
        "kubernetes_validate",
        reason="kubernetes-validate not installed: cannot validate the manifests (pip install kubernetes-validate)",
    )


class TestFiles:
    """The base's files, read directly (no kubectl needed)."""

    def test_every_manifest_file_is_listed_in_the_kustomization(self) -> None:
        """Each YAML file in deploy/k8s is a kustomize resource, and each listed resource exists."""
        kustomization = yaml.safe_load((BASE_DIR / "kustomization.yaml").read_text())
        listed = set(kustomization["resources"])
        present = {p.name for p in BASE_DIR.glob("*.yaml")} - {"kustomization.yaml"}
        assert listed == present

    def test_every_file_parses_as_yaml(self) -> None:
        """Every manifest file is well-formed YAML holding Kubernetes objects with kind and name."""
        for path in sorted(BASE_DIR.glob("*.yaml")):
            if path.name == "kustomization.yaml":
                continue
            docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
            assert docs, f"{path.name} holds no object"
            for doc in docs:
                assert doc.get("apiVersion") and doc.get("kind") and doc["metadata"].get("name"), path.name


class TestRender:
    """kustomize renders the base and the overlay to the expected set of objects."""

    def test_base_objects(self, base_docs: list[dict[str, Any]]) -> None:
        """The base holds exactly the broker's seven objects, with no namespace forced on them."""
        kinds = sorted((d["kind"], d["metadata"]["name"]) for d in base_docs)
        assert kinds == [
            ("ConfigMap", "logfabric-broker"),
            ("NetworkPolicy", "logfabric"),
            ("PodDisruptionBudget", "logfabric"),
            ("Service", "logfabric"),
            ("Service", "logfabric-headless"),
            ("ServiceAccount", "logfabric"),
            ("StatefulSet", "logfabric"),
        ]
        assert all("namespace" not in d["metadata"] for d in base_docs)

    def test_overlay_changes_only_replicas_and_the_budget(
        self, base_docs: list[dict[str, Any]], overlay_docs: list[dict[str, Any]]
    ) -> None:
        """The overlay is the base with 3 replicas and a PDB of minAvailable 2, nothing else."""
        assert workload(overlay_docs)["spec"]["replicas"] == 3
        pdb = find(overlay_docs, "PodDisruptionBudget")["spec"]
        assert pdb.get("minAvailable") == 2
        assert "maxUnavailable" not in pdb, "a PDB with both minAvailable and maxUnavailable is rejected"
        assert pdb["minAvailable"] < workload(overlay_docs)["spec"]["replicas"], "node drains must be able to proceed"

        def without_changes(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
            docs = copy.deepcopy(docs)
            workload(docs)["spec"].pop("replicas")
            for key in ("minAvailable", "maxUnavailable"):
                find(docs, "PodDisruptionBudget")["spec"].pop(key, None)
            return sorted(docs, key=lambda d: (d["kind"], d["metadata"]["name"]))

        assert without_changes(overlay_docs) == without_changes(base_docs)

    def test_base_is_one_replica_with_max_unavailable_one(self, base_docs: list[dict[str, Any]]) -> None:
        """The base runs one broker and lets voluntary disruptions take one pod at a time."""
        assert workload(base_docs)["spec"]["replicas"] == 1
        pdb = find(base_docs, "PodDisruptionBudget")["spec"]
        assert pdb.get("maxUnavailable") == 1 and "minAvailable" not in pdb


class TestSchema:
    """Every rendered object is valid for a recent Kubernetes, strictly (no unknown fields)."""

    @staticmethod
    def _errors(kv: Any, docs: list[dict[str, Any]], version: str) -> list[str]:
        errors = []
        for doc in docs:
            where = f"{doc['kind']}/{doc['metadata']['name']}"
            try:
                kv.validate(doc, version, strict=True)
            except kv.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                errors.append(f"{where}: {path}: {exc.message}")
            except kv.SchemaNotFoundError as exc:
                errors.append(f"{where}: {exc.message}")
        return errors

    @pytest.mark.parametrize("which", ["base_docs", "overlay_docs"])
    def test_strictly_valid_for_the_latest_shipped_version(self, validator: Any, which: str, request: Any) -> None:
        """Base and overlay pass kubernetes-validate --strict against the newest Kubernetes schema it ships."""
        version = validator.utils.latest_version()
        docs = request.getfixturevalue(which)
        assert self._errors(validator, docs, version) == [], f"against Kubernetes {version}"

    def test_strict_mode_catches_a_misspelt_field(self, validator: Any, base_docs: list[dict[str, Any]]) -> None:
        """The check above has teeth: a misspelt securityContext field in the StatefulSet is rejected."""
        broken = copy.deepcopy(workload(base_docs))
        security = broken["spec"]["template"]["spec"]["containers"][0]["securityContext"]
        security["readOnlyRootFileSystem"] = security.pop("readOnlyRootFilesystem")
        errors = self._errors(validator, [broken], validator.utils.latest_version())
        assert len(errors) == 1 and "readOnlyRootFileSystem" in errors[0]


class TestBrokerSettings:
    """The ConfigMap is a valid broker configuration that binds exactly the container's ports."""

    def test_every_key_is_a_broker_setting(self, base_docs: list[dict[str, Any]]) -> None:
        """Each ConfigMap key is LOGFABRIC_BROKER_<FIELD> for a real BrokerConfig field."""
        known = {f.name for f in fields(BrokerConfig)}
        for key in configmap_env(base_docs):
            assert key.startswith(ENV_PREFIX), key
            assert key[len(ENV_PREFIX) :].lower() in known, f"{key} is not a broker setting"

    def test_configmap_loads(self, base_docs: list[dict[str, Any]]) -> None:
        """BrokerConfig.load accepts the ConfigMap as the environment and gets its values from it."""
        env = configmap_env(base_docs)
        config = BrokerConfig.load(env=env)
        assert config.drain_timeout == float(env["LOGFABRIC_BROKER_DRAIN_TIMEOUT"]) == 20.0
        assert config.hwm == int(env["LOGFABRIC_BROKER_HWM"])
        assert config.max_message == int(env["LOGFABRIC_BROKER_MAX_MESSAGE"])
        assert config.upstream == () and config.pipeline is None

    def test_bound_ports_are_the_container_ports(self, base_docs: list[dict[str, Any]]) -> None:
        """The ports the configured endpoints bind equal the ZMTP containerPorts, and HTTP the http port."""
        config = loaded_config(base_docs)
        ports = container_ports(broker_container(base_docs))
        assert ports == {"pub-ingest": 5556, "push-ingest": 5557, "egress": 5558, "history": 5559, "http": 9102}
        bound = {name: tcp_port(getattr(config, field)) for name, field in BOUND_ENDPOINTS.items()}
        if config.pipeline is not None:
            bound["pipeline"] = tcp_port(config.pipeline)
        assert bound == {name: port for name, port in ports.items() if name != "http"}
        assert config.http is not None, "HTTP must stay on: the probes and /metrics use it"
        assert parse_http(config.http)[1] == ports["http"]

    def test_binds_every_interface(self, base_docs: list[dict[str, Any]]) -> None:
        """Sockets bind all interfaces, so the pod IP (Services, port-forward) reaches them."""
        config = loaded_config(base_docs)
        for field in BOUND_ENDPOINTS.values():
            assert tcp_host(getattr(config, field)) in ("*", "0.0.0.0"), field
        assert config.http is not None
        assert parse_http(config.http)[0] in ("0.0.0.0", "::")

    def test_a_broker_with_these_settings_binds_these_ports(self, base_docs: list[dict[str, Any]]) -> None:
        """A real broker, given the ConfigMap with hosts moved to 127.0.0.1, reports the containerPorts bound."""
        config = loaded_config(base_docs)
        ports = container_ports(broker_container(base_docs))
        assert config.http is not None
        local = config.with_overrides(
            **{field: getattr(config, field).replace("*", "127.0.0.1", 1) for field in BOUND_ENDPOINTS.values()},
            http=f"127.0.0.1:{parse_http(config.http)[1]}",
            drain_timeout=0.0,
        )
        broker = Broker(local)
        try:
            broker.start()
        except (ValueError, RuntimeError) as exc:
            broker.stop(drain_timeout=0)  # start() leaves the proxies running when only HTTP fails to bind
            if "in use" in str(exc):
                pytest.skip(f"a manifest port is busy on 127.0.0.1 ({exc}); cannot bind the real ports here")
            raise
        try:
            got = {name: tcp_port(broker.endpoints[field]) for name, field in BOUND_ENDPOINTS.items()}
            got["http"] = parse_http(broker.endpoints["http"])[1]
            assert got == ports
        finally:
            broker.stop(drain_timeout=0)


class TestContainer:
    """The container runs the real command, with the probes and hooks the broker answers."""

    def test_command_is_the_image_entrypoint(self, base_docs: list[dict[str, Any]]) -> None:
        """command is `logfabric broker`, the same as deploy/Dockerfile's ENTRYPOINT."""
        container = broker_container(base_docs)
        assert container["command"] == ["logfabric", "broker"]
        assert json.loads(dockerfile_instruction("ENTRYPOINT")) == container["command"]

    def test_logfabric_broker_is_a_real_command(self, capsys: pytest.CaptureFixture[str]) -> None:
        """`logfabric broker --help` reaches the broker's own parser through the logfabric entry point."""
        with pytest.raises(SystemExit) as exited:
            logfabric_main(["broker", "--help"])
        assert exited.value.code == 0
        assert "usage: logfabric broker" in capsys.readouterr().out

    def test_args_parse_and_set_no_setting(self, base_docs: list[dict[str, Any]]) -> None:
        """The args parse with broker.cli.build_parser() and leave every setting to the ConfigMap."""
        args = build_parser().parse_args(broker_container(base_docs).get("args", []))
        settings = {f.name for f in fields(BrokerConfig)} | {"config"}
        assert {name: getattr(args, name) for name in settings} == dict.fromkeys(settings)

    def test_image(self, base_docs: list[dict[str, Any]]) -> None:
        """The image is logfabric-broker tagged with the package version, pulled only if absent."""
        container = broker_container(base_docs)
        assert container["image"] == f"logfabric-broker:{fabric.__version__}"
        assert container["imagePullPolicy"] == "IfNotPresent"

    def test_http_probes_only(self, base_docs: list[dict[str, Any]]) -> None:
        """Readiness is GET /readyz and liveness GET /healthz on port http; no tcpSocket, exec or grpc probe."""
        container = broker_container(base_docs)
        assert "http" in container_ports(container)
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
            probe = container.get(kind)
            if probe is None:
                continue
            assert set(probe) & {"tcpSocket", "exec", "grpc"} == set(), f"{kind} must be an HTTP probe"
            assert probe["httpGet"]["port"] == "http", f"{kind} should use the named http port"
            assert probe["httpGet"].get("scheme", "HTTP") == "HTTP"

    def test_probe_and_metrics_paths_are_served(self, base_docs: list[dict[str, Any]]) -> None:
        """An embedded broker answers 200 on the manifest's probe paths and scrape path (404 elsewhere)."""
        container = broker_container(base_docs)
        annotations = workload(base_docs)["spec"]["template"]["metadata"]["annotations"]
        paths = [
            container["readinessProbe"]["httpGet"]["path"],
            container["livenessProbe"]["httpGet"]["path"],
            annotations["prometheus.io/path"],
        ]
        with Broker(
            pub_ingest="tcp://127.0.0.1:*",
            push_ingest="tcp://127.0.0.1:*",
            egress="tcp://127.0.0.1:*",
            http="127.0.0.1:0",
        ) as broker:
            address = broker.endpoints["http"]
            assert {path: http_get(address, path) for path in paths} == dict.fromkeys(paths, 200)
            assert http_get(address, "/no-such-probe") == 404

    def test_prometheus_annotations(self, base_docs: list[dict[str, Any]]) -> None:
        """The pods ask to be scraped on the http containerPort at /metrics."""
        annotations = workload(base_docs)["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(container_ports(broker_container(base_docs))["http"])
        assert annotations["prometheus.io/path"] == "/metrics"

    def test_resources(self, base_docs: list[dict[str, Any]]) -> None:
        """CPU and memory have both requests and limits."""
        resources = broker_container(base_docs)["resources"]
        for kind in ("requests", "limits"):
            assert set(resources[kind]) >= {"cpu", "memory"}, kind

    def test_read_only_root_with_a_writable_tmp(self, base_docs: list[dict[str, Any]]) -> None:
        """/tmp is an emptyDir, the one writable place on a read-only root filesystem."""
        mounts = {m["mountPath"]: m["name"] for m in broker_container(base_docs)["volumeMounts"]}
        volumes = {v["name"]: v for v in pod_spec(base_docs)["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]]

    def test_settings_come_from_the_configmap_only(self, base_docs: list[dict[str, Any]]) -> None:
        """No env entry and no service-link variables can add or shadow a LOGFABRIC_BROKER_* setting."""
        container = broker_container(base_docs)
        assert not [e for e in container.get("env", []) if e["name"].startswith(ENV_PREFIX)]
        assert pod_spec(base_docs)["enableServiceLinks"] is False


class TestSecurity:
    """The pod runs unprivileged, as the image's user, without an API token."""

    def test_container_security_context(self, base_docs: list[dict[str, Any]]) -> None:
        """Non-root uid 10001, read-only root, no privilege escalation, no capabilities, RuntimeDefault seccomp."""
        sc = broker_container(base_docs)["securityContext"]
        assert sc["runAsNonRoot"] is True
        assert sc["runAsUser"] == 10001
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add")
        assert sc["seccompProfile"]["type"] == "RuntimeDefault"
        assert sc.get("privileged", False) is False

    def test_pod_security_context(self, base_docs: list[dict[str, Any]]) -> None:
        """The pod-level context agrees: non-root 10001 with RuntimeDefault seccomp."""
        sc = pod_spec(base_docs)["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001
        assert sc["seccompProfile"]["type"] == "RuntimeDefault"

    def test_uid_is_the_image_user(self, base_docs: list[dict[str, Any]]) -> None:
        """runAsUser and runAsGroup are the USER of deploy/Dockerfile."""
        user, _, group = dockerfile_instruction("USER").partition(":")
        sc = broker_container(base_docs)["securityContext"]
        assert (str(sc["runAsUser"]), str(sc["runAsGroup"])) == (user, group or user)

    def test_no_service_account_token(self, base_docs: list[dict[str, Any]]) -> None:
        """The ServiceAccount and the pod both turn off the API token mount."""
        account = find(base_docs, "ServiceAccount")
        assert account["automountServiceAccountToken"] is False
        spec = pod_spec(base_docs)
        assert spec["serviceAccountName"] == account["metadata"]["name"]
        assert spec["automountServiceAccountToken"] is False


class TestShutdown:
    """A rolling restart leaves the broker the time its drain needs."""

    def test_grace_period_covers_prestop_and_drain(self, base_docs: list[dict[str, Any]]) -> None:
        """terminationGracePeriodSeconds >= preStop sleep + drain timeout + a 5 s margin."""
        grace = pod_spec(base_docs)["terminationGracePeriodSeconds"]
        sleep = prestop_seconds(broker_container(base_docs))
        drain = loaded_config(base_docs).drain_timeout
        assert sleep > 0, "without a preStop pause, SIGTERM can arrive before the pod leaves the Services"
        assert grace >= sleep + drain + 5, f"grace {grace} s < preStop {sleep} s + drain {drain} s + 5 s"

    def test_prestop_sleep_is_an_absolute_binary(self, base_docs: list[dict[str, Any]]) -> None:
        """The preStop hook is the native sleep action or execs /bin/sleep directly (no shell, no PATH lookup)."""
        hook = broker_container(base_docs)["lifecycle"]["preStop"]
        assert "sleep" in hook or hook["exec"]["command"][0] == "/bin/sleep"


class TestServices:
    """Producers reach the ingests through one ClusterIP; subscribers see every broker through DNS."""

    def test_cluster_ip_service_for_producers(self, base_docs: list[dict[str, Any]]) -> None:
        """Service logfabric: ClusterIP, 5556/5557/9102 to the same-named container ports, no egress."""
        spec = find(base_docs, "Service", "logfabric")["spec"]
        assert spec.get("type", "ClusterIP") == "ClusterIP" and spec.get("clusterIP") != "None"
        ports = {p["name"]: (p["port"], p["targetPort"]) for p in spec["ports"]}
        assert ports == {
            "pub-ingest": (5556, "pub-ingest"),
            "push-ingest": (5557, "push-ingest"),
            "http": (9102, "http"),
        }

    def test_headless_service_for_subscribers(self, base_docs: list[dict[str, Any]]) -> None:
        """Service logfabric-headless: clusterIP None, ready pods only, the egress and history ports."""
        spec = find(base_docs, "Service", "logfabric-headless")["spec"]
        assert spec["clusterIP"] == "None"
        assert spec["publishNotReadyAddresses"] is False
        assert [(p["name"], p["port"], p["targetPort"]) for p in spec["ports"]] == [
            ("egress", 5558, "egress"),
            ("history", 5559, "history"),
        ]

    @pytest.mark.parametrize("name", ["logfabric", "logfabric-headless"])
    def test_target_ports_exist(self, base_docs: list[dict[str, Any]], name: str) -> None:
        """Every targetPort names a container port, and the Service port equals its number."""
        ports = container_ports(broker_container(base_docs))
        for port in find(base_docs, "Service", name)["spec"]["ports"]:
            assert port["targetPort"] in ports, f"{name}: no container port {port['targetPort']!r}"
            assert port["port"] == ports[port["targetPort"]]

    @pytest.mark.parametrize("name", ["logfabric", "logfabric-headless"])
    def test_selects_the_broker_pods(self, base_docs: list[dict[str, Any]], name: str) -> None:
        """The Service selects exactly the StatefulSet's selector, which matches its pod labels."""
        statefulset = workload(base_docs)["spec"]
        selector = find(base_docs, "Service", name)["spec"]["selector"]
        assert selector == statefulset["selector"]["matchLabels"]
        assert selector_matches(statefulset["selector"], statefulset["template"]["metadata"]["labels"])

    def test_statefulset_is_governed_by_the_headless_service(self, base_docs: list[dict[str, Any]]) -> None:
        """serviceName is the headless Service, giving pods DNS names like logfabric-0.logfabric-headless."""
        assert workload(base_docs)["spec"]["serviceName"] == "logfabric-headless"


class TestAvailability:
    """Replicas spread over nodes and survive voluntary disruptions one at a time."""

    def test_anti_affinity_across_nodes(self, base_docs: list[dict[str, Any]]) -> None:
        """A preferred podAntiAffinity on kubernetes.io/hostname against the broker pods themselves."""
        template = workload(base_docs)["spec"]["template"]
        terms = template["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        assert any(
            t["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
            and selector_matches(t["podAffinityTerm"]["labelSelector"], template["metadata"]["labels"])
            for t in terms
        )

    @pytest.mark.parametrize("which", ["base_docs", "overlay_docs"])
    def test_pdb_selects_the_broker_pods(self, which: str, request: Any) -> None:
        """The PodDisruptionBudget's selector matches the broker pods."""
        docs = request.getfixturevalue(which)
        pdb = find(docs, "PodDisruptionBudget")
        assert selector_matches(pdb["spec"]["selector"], workload(docs)["spec"]["template"]["metadata"]["labels"])

    def test_overlay_renders_three_replicas(self, overlay_docs: list[dict[str, Any]]) -> None:
        """deploy/overlays/three-replicas runs three brokers."""
        assert workload(overlay_docs)["spec"]["replicas"] == 3


class TestNetworkPolicy:
    """Who may reach which broker port."""

    PRODUCER = {"logfabric.io/role": "producer"}
    SUBSCRIBER = {"logfabric.io/role": "subscriber"}
    PROMETHEUS = {"app.kubernetes.io/name": "prometheus"}

    def test_selects_the_broker_pods_for_ingress(self, base_docs: list[dict[str, Any]]) -> None:
        """The policy applies to the broker pods and restricts ingress."""
        spec = find(base_docs, "NetworkPolicy")["spec"]
        assert selector_matches(spec["podSelector"], workload(base_docs)["spec"]["template"]["metadata"]["labels"])
        assert "Ingress" in spec["policyTypes"]

    @pytest.mark.parametrize(
        ("labels", "namespace", "port_names"),
        [
            pytest.param(PRODUCER, "shop", {"pub-ingest", "push-ingest"}, id="producer elsewhere"),
            pytest.param(PRODUCER, NAMESPACE, {"pub-ingest", "push-ingest"}, id="producer alongside"),
            pytest.param(SUBSCRIBER, "analytics", {"egress", "history"}, id="subscriber elsewhere"),
            pytest.param(None, NAMESPACE, {"egress"}, id="another broker"),
            pytest.param(None, "elsewhere", set(), id="a broker in another namespace"),
            pytest.param(PROMETHEUS, "monitoring", {"http"}, id="prometheus in monitoring"),
            pytest.param(PROMETHEUS, "shop", set(), id="prometheus elsewhere"),
            pytest.param({}, NAMESPACE, set(), id="an unlabelled pod alongside"),
            pytest.param({"role": "producer"}, "shop", set(), id="a producer label on another key"),
        ],
    )
    def test_allowed_ports(
        self,
        base_docs: list[dict[str, Any]],
        labels: dict[str, str] | None,
        namespace: str,
        port_names: set[str],
    ) -> None:
        """Each peer reaches exactly its ports: producers ingests, subscribers and brokers egress, Prometheus http."""
        container = broker_container(base_docs)
        if labels is None:  # a broker pod: the StatefulSet's own labels
            labels = workload(base_docs)["spec"]["template"]["metadata"]["labels"]
        got = ingress_ports(find(base_docs, "NetworkPolicy"), container, labels, namespace)
        ports = container_ports(container)
        assert got == {ports[name] for name in port_names}
