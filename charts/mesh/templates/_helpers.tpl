{{/*
Chart name, truncated to 63 characters (a DNS label).
*/}}
{{- define "mesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified release name: the release name when it already contains the chart name
("mesh", "mesh-canary"), else "<release>-mesh". Truncated so that every derived name stays <= 63 characters.
*/}}
{{- define "mesh.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Name of the webhook's namespaced objects: Deployment, Service, ConfigMap, Role, PodDisruptionBudget.
With the release "mesh" this is "mesh-webhook", the webhook's default --service-name.
*/}}
{{- define "mesh.webhookName" -}}
{{- printf "%s-webhook" (include "mesh.fullname" .) }}
{{- end }}

{{/*
Name of the Secret holding the serving certificate ("mesh-webhook-tls" for the release "mesh").
*/}}
{{- define "mesh.tlsSecretName" -}}
{{- if eq .Values.certificates.mode "existingSecret" }}
{{- required "certificates.existingSecret.name is required when certificates.mode=existingSecret" .Values.certificates.existingSecret.name }}
{{- else }}
{{- printf "%s-tls" (include "mesh.webhookName" .) }}
{{- end }}
{{- end }}

{{/*
Name of the MutatingWebhookConfiguration (cluster-scoped).
*/}}
{{- define "mesh.webhookConfigName" -}}
{{- printf "%s-sidecar-injector" (include "mesh.fullname" .) }}
{{- end }}

{{/*
The revision this release serves, as it appears in istio.io/rev labels: "default" when revision is "".
*/}}
{{- define "mesh.revision" -}}
{{- default "default" .Values.revision }}
{{- end }}

{{/*
Chart label value.
*/}}
{{- define "mesh.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels that select the webhook's pods.
*/}}
{{- define "mesh.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mesh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webhook
{{- end }}

{{/*
Common labels of every object.
*/}}
{{- define "mesh.labels" -}}
helm.sh/chart: {{ include "mesh.chart" . }}
{{ include "mesh.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mesh
istio.io/rev: {{ include "mesh.revision" . }}
{{- end }}

{{/*
Label selector (string form) of this release's MutatingWebhookConfiguration, given to the webhook as
--webhook-config-selector so that it patches the caBundle of its own configuration only.
*/}}
{{- define "mesh.webhookConfigSelector" -}}
{{- printf "app.kubernetes.io/instance=%s,app.kubernetes.io/component=webhook" .Release.Name }}
{{- end }}

{{/*
ServiceAccount name.
*/}}
{{- define "mesh.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mesh.webhookName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create=false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
An image reference from {registry, repository, tag, digest}; the tag defaults to the chart's appVersion.
Usage: include "mesh.image" (dict "image" .Values.image "context" $)
*/}}
{{- define "mesh.image" -}}
{{- $img := .image }}
{{- $ref := $img.repository }}
{{- if $img.registry }}
{{- $ref = printf "%s/%s" $img.registry $img.repository }}
{{- end }}
{{- if $img.digest }}
{{- printf "%s@%s" $ref $img.digest }}
{{- else }}
{{- printf "%s:%s" $ref (toString (default .context.Chart.AppVersion $img.tag)) }}
{{- end }}
{{- end }}
