#!/usr/bin/env bash
# helm lint --strict of charts/mesh with the default values and every value set in charts/mesh/ci/
# (revision, cert-manager, existing secret, single replica, monitoring), and a check that the schema
# rejects a bad value with a message naming it. The goldens and strict parsing are in
# tests/tests/chart_render.rs.
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
helm=${MESH_HELM:-$repo/.tools/bin/helm}
[ -x "$helm" ] || { echo "helm not found at $helm (set MESH_HELM or run tests/run, which installs it)" >&2; exit 1; }
chart=$repo/charts/mesh
kube_version=1.33.0
failed=0

lint() {
  local name=$1; shift
  if out=$("$helm" lint --strict --kube-version "$kube_version" "$chart" "$@" 2>&1); then
    echo "helm lint --strict ($name): ok"
  else
    echo "helm lint --strict ($name) FAILED:"; echo "$out"; failed=1
  fi
}

lint default
for values in "$chart"/ci/*-values.yaml; do
  lint "$(basename "$values" -values.yaml)" -f "$values"
done

# A bad value must fail the render and name the value.
if out=$("$helm" template mesh "$chart" --kube-version "$kube_version" --set webhook.failurePolicy=Sometimes 2>&1); then
  echo "schema check FAILED: webhook.failurePolicy=Sometimes was accepted"; failed=1
elif ! grep -qE 'webhook[./]failurePolicy' <<<"$out"; then
  echo "schema check FAILED: the error does not name webhook.failurePolicy:"; echo "$out"; failed=1
else
  echo "schema rejects webhook.failurePolicy=Sometimes: ok"
fi
exit "$failed"
