#!/usr/bin/env bash
# Offline checks of the deploy files: the OpenShift manifests against the Kubernetes schemas
# (strict: unknown fields fail; CRDs such as ServiceMonitor have no schema and only warn), as
# files and as kustomize builds (`kubectl kustomize`) of the base and of every overlay,
# docker-compose.yml with docker-compose (no engine needed), and the Containerfile with hadolint.
# A missing validator fails under CI (scripts/install-deps.sh installs them) and is skipped,
# with a note, elsewhere.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Validators scripts/install-deps.sh installed from PyPI live in strait's virtualenv.
export PATH="$PATH:$HOME/.cache/strait/venv/bin"

# OpenShift 4.15 is Kubernetes 1.28: the oldest release the manifests (pod-index label) target.
K8S_VERSION=1.28.0

log() { printf '[validate-deploy] %s\n' "$*" >&2; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
missing() {
  if [ -n "${CI:-}" ] && [ "${CI}" != "false" ]; then
    log "CI is set but $1 is not installed: run scripts/install-deps.sh"
    exit 1
  fi
  log "SKIPPED: $1 not installed (run scripts/install-deps.sh)"
}

if command -v kubernetes-validate >/dev/null 2>&1; then
  manifests=()
  for f in deploy/openshift/*.yaml; do
    # kustomization.yaml is kustomize's own file, not a Kubernetes resource.
    [ "$(basename "$f")" = kustomization.yaml ] || manifests+=("$f")
  done
  kubernetes-validate --strict --quiet -k "$K8S_VERSION" "${manifests[@]}"
  # Every file kustomization.yaml names must exist.
  for r in $(sed -n 's/^  - \(.*\.yaml\)$/\1/p' deploy/openshift/kustomization.yaml); do
    [ -f "deploy/openshift/$r" ] || { log "kustomization.yaml names missing file $r"; exit 1; }
  done
  log "OpenShift manifests valid against Kubernetes $K8S_VERSION"
else
  missing kubernetes-validate
fi

# kustomize builds: the base (deploy/openshift), the base with the sharded StatefulSet in place
# of the Deployment, and every overlay under deploy/overlays, each validated as above. They
# are built from a copy of deploy/ in which each overlay's secrets/*.example stands in for the
# file the operator writes (and any such file of the working tree is left out of the copy).
# The kubectl whose built-in kustomize is v4 or newer: the system's, or the one
# scripts/install-deps.sh put in the virtualenv (Debian 12's kubectl 1.20 has kustomize v2).
KUBECTL=kubectl
if ! kubectl version --client 2>/dev/null | grep -q 'Kustomize Version: v[4-9]'; then
  KUBECTL="$HOME/.cache/strait/venv/bin/kubectl"
fi
if ! command -v "$KUBECTL" >/dev/null 2>&1; then
  missing "kubectl with kustomize v4 or newer"
elif ! command -v kubernetes-validate >/dev/null 2>&1; then
  missing kubernetes-validate
else
  cp -R deploy "$work/deploy"
  for d in "$work"/deploy/overlays/*/secrets; do
    [ -d "$d" ] || continue
    find "$d" -type f ! -name '*.example' -delete
    for example in "$d"/*.example; do
      [ -f "$example" ] && cp "$example" "${example%.example}"
    done
  done
  cp -R "$work/deploy/openshift" "$work/deploy/openshift-sharded"
  sed -i 's/^  - deployment\.yaml$/  - statefulset-sharded.yaml/' "$work/deploy/openshift-sharded/kustomization.yaml"
  grep -qx '  - statefulset-sharded.yaml' "$work/deploy/openshift-sharded/kustomization.yaml" \
    || { log "deploy/openshift/kustomization.yaml no longer lists deployment.yaml"; exit 1; }
  mkdir "$work/built"
  builds=(openshift openshift-sharded)
  for o in deploy/overlays/*/kustomization.yaml; do
    builds+=("overlays/$(basename "$(dirname "$o")")")
  done
  for b in "${builds[@]}"; do
    out="$work/built/${b//\//_}.yaml"
    if ! "$KUBECTL" kustomize "$work/deploy/$b" >"$out"; then
      log "kubectl kustomize deploy/$b failed"
      exit 1
    fi
    kubernetes-validate --strict --quiet -k "$K8S_VERSION" "$out"
  done
  if python3 -c 'import yaml' 2>/dev/null; then
    # Every ConfigMap and Secret a built workload uses is in the build under its generated
    # name (so a change rolls the pod), except the Secrets Strimzi's operators create; the
    # base ships no Secret.
    python3 - "$work/built" <<'PY'
import glob
import os
import sys

import yaml

EXTERNAL_SECRETS = {"my-cluster-cluster-ca-cert", "strait"}
problems = []
for path in sorted(glob.glob(f"{sys.argv[1]}/*.yaml")):
    name = os.path.basename(path)[: -len(".yaml")]
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    have = {(d["kind"], d["metadata"]["name"]) for d in docs}
    workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    if len(workloads) != 1:
        problems.append(f"{name}: {len(workloads)} workloads, expected 1")
    for w in workloads:
        pod = w["spec"]["template"]["spec"]
        refs = [("ConfigMap", v["configMap"]["name"]) for v in pod.get("volumes", []) if "configMap" in v]
        refs += [("Secret", v["secret"]["secretName"]) for v in pod.get("volumes", []) if "secret" in v]
        for c in pod["containers"]:
            refs += [("ConfigMap", e["configMapRef"]["name"]) for e in c.get("envFrom", []) if "configMapRef" in e]
            refs += [("Secret", e["secretRef"]["name"]) for e in c.get("envFrom", []) if "secretRef" in e]
        for kind, ref in refs:
            if (kind, ref) not in have and not (kind == "Secret" and ref in EXTERNAL_SECRETS):
                problems.append(f"{name}: {w['kind']} uses {kind} {ref}, which the build lacks")
        for base in ("strait-config-", "strait-env-"):
            if not any(k == "ConfigMap" and ref.startswith(base) for k, ref in refs):
                problems.append(f"{name}: {w['kind']} does not use the generated {base}<hash>")
    if name.startswith("openshift") and any(d["kind"] == "Secret" for d in docs):
        problems.append(f"{name}: the base ships a Secret; credentials belong to the overlays")
if problems:
    sys.exit("\n".join(problems))
PY
  else
    missing "python3's yaml module (Debian: python3-yaml)"
  fi
  log "kustomize builds valid against Kubernetes $K8S_VERSION: ${builds[*]}"
fi

# Consistency between manifests: the sharded StatefulSet probes as the Deployment does, and the
# ServiceMonitor and NetworkPolicy select every strait Service and pod.
if python3 -c 'import yaml' 2>/dev/null; then
  python3 - deploy/openshift <<'PY'
import glob
import sys

import yaml

folder = sys.argv[1]
docs = [d for f in sorted(glob.glob(f"{folder}/*.yaml")) for d in yaml.safe_load_all(open(f)) if d]
by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], []).append(d)


def selects(selector, labels):
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        value, op = labels.get(e["key"]), e["operator"]
        if op == "In" and value not in e["values"] or op == "NotIn" and value in e["values"]:
            return False
        if op == "Exists" and value is None or op == "DoesNotExist" and value is not None:
            return False
    return True


problems = []
workloads = by_kind["Deployment"] + by_kind["StatefulSet"]
probes = ("livenessProbe", "readinessProbe", "startupProbe")
want = {p: by_kind["Deployment"][0]["spec"]["template"]["spec"]["containers"][0].get(p) for p in probes}
for w in workloads:
    container = w["spec"]["template"]["spec"]["containers"][0]
    for p in probes:
        if container.get(p) != want[p]:
            problems.append(f'{w["kind"]} {w["metadata"]["name"]}: {p} differs from the Deployment\'s')
    pod_labels = w["spec"]["template"]["metadata"]["labels"]
    for policy in by_kind["NetworkPolicy"]:
        if not selects(policy["spec"]["podSelector"], pod_labels):
            problems.append(f'NetworkPolicy {policy["metadata"]["name"]} does not select {w["kind"]} {w["metadata"]["name"]}\'s pods')
for svc in by_kind["Service"]:
    for monitor in by_kind["ServiceMonitor"]:
        if not selects(monitor["spec"]["selector"], svc["metadata"].get("labels", {})):
            problems.append(f'ServiceMonitor {monitor["metadata"]["name"]} does not select Service {svc["metadata"]["name"]}')
if problems:
    sys.exit("\n".join(problems))
PY
  log "StatefulSet probes match the Deployment's; ServiceMonitor and NetworkPolicy select every strait Service and pod"
else
  missing "python3's yaml module (Debian: python3-yaml)"
fi

if command -v docker-compose >/dev/null 2>&1; then
  docker-compose -f docker-compose.yml config -q
  log "docker-compose.yml valid"
else
  missing docker-compose
fi

if command -v hadolint >/dev/null 2>&1; then
  hadolint Containerfile
  log "Containerfile lint clean"
else
  log "SKIPPED: hadolint not installed; Containerfile not linted"
fi

# Every path the Containerfile copies from the build context must survive .dockerignore.
for src in $(awk '/^COPY / && $2 !~ /^--/ { for (i = 2; i < NF; i++) print $i }' Containerfile); do
  if grep -qx "$src" .dockerignore; then
    echo "Containerfile copies $src, which .dockerignore excludes" >&2
    exit 1
  fi
done
log "Containerfile copies nothing that .dockerignore excludes"

# Alerts: the PrometheusRule's groups go to a rules file that `promtool check rules` checks (the
# annotations' templates included), and, without annotations, to the one the unit tests of
# deploy/prometheus/alerts-test.yaml load (they check when each alert fires and its labels).
# Every alert must name its runbook, a heading of deploy/openshift/README.md.
if ! command -v promtool >/dev/null 2>&1; then
  missing promtool
elif ! python3 -c 'import yaml' 2>/dev/null; then
  missing "python3's yaml module (Debian: python3-yaml)"
else
  rules_dir="$work/rules"
  mkdir "$rules_dir"
  python3 - deploy/openshift/prometheusrule.yaml deploy/openshift/README.md "$rules_dir" <<'PY'
import sys

import yaml

rule_path, readme_path, out = sys.argv[1:4]
with open(rule_path) as f:
    doc = yaml.safe_load(f)
if doc.get("kind") != "PrometheusRule":
    sys.exit(f"{rule_path}: kind {doc.get('kind')!r}, expected PrometheusRule")
spec = doc["spec"]
with open(f"{out}/prometheusrule-spec.yaml", "w") as f:
    yaml.safe_dump(spec, f, sort_keys=False)
with open(readme_path) as f:
    headings = {line[4:].strip() for line in f if line.startswith("### ")}
problems = []
for group in spec["groups"]:
    for rule in group["rules"]:
        name = rule.get("alert")
        if name is None:
            continue
        want = f"{readme_path}#{name.lower()}"
        got = rule.get("annotations", {}).get("runbook")
        if got != want:
            problems.append(f"{name}: runbook annotation is {got!r}, expected {want!r}")
        if name not in headings:
            problems.append(f"{name}: {readme_path} has no '### {name}' runbook")
        rule.pop("annotations", None)
if problems:
    sys.exit("\n".join(problems))
with open(f"{out}/strait-rules.yaml", "w") as f:
    yaml.safe_dump(spec, f, sort_keys=False)
PY
  promtool check rules "$rules_dir/prometheusrule-spec.yaml" >/dev/null
  cp deploy/prometheus/alerts-test.yaml "$rules_dir/"
  (cd "$rules_dir" && promtool test rules alerts-test.yaml >/dev/null)
  log "alert rules pass promtool check rules and deploy/prometheus/alerts-test.yaml"

  # The dashboard's queries: every one filters by the $namespace and $pod variables (and
  # $topic where the series has a topic), and parses as PromQL once the variables are replaced
  # by what "All" sends (.*): promtool checks them as recording rules.
  python3 - deploy/grafana/strait-dashboard.json "$rules_dir/dashboard-queries.yaml" <<'PY'
import json
import re
import sys

import yaml

path, out = sys.argv[1:3]
with open(path) as f:
    dash = json.load(f)
variables = {v["name"] for v in dash["templating"]["list"]}
missing = {"datasource", "namespace", "pod", "topic"} - variables
if missing:
    sys.exit(f"{path}: template variables {sorted(missing)} missing")
per_topic = re.compile(r"strait_(records_replicated|source_bytes|wire_bytes|lag|source_gap|partition_halted|retention_headroom)")
problems, rules = [], []
for panel in dash["panels"]:
    for target in panel["targets"]:
        expr, where = target["expr"], f'panel {panel["id"]} ({panel["title"]}) {target["refId"]}'
        needs = ["$namespace", "$pod"] + (["$topic"] if per_topic.search(expr) else [])
        problems += [f"{where}: {expr} does not filter by {v}" for v in needs if v not in expr]
        plain = re.sub(r"\$(namespace|pod|topic)\b", ".*", expr)
        rules.append({"record": f'dashboard:panel_{panel["id"]}_{target["refId"]}', "expr": plain})
if problems:
    sys.exit("\n".join(problems))
with open(out, "w") as f:
    yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f, sort_keys=False)
PY
  promtool check rules "$rules_dir/dashboard-queries.yaml" >/dev/null
  log "Grafana dashboard queries filter by \$namespace and \$pod and parse as PromQL"
fi

python3 -m json.tool deploy/grafana/strait-dashboard.json >/dev/null
log "Grafana dashboard is valid JSON"
