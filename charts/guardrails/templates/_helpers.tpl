{{- define "guardrails.fullname" -}}
{{- printf "%s-guardrails" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "guardrails.labels" -}}
app.kubernetes.io/name: guardrails
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "guardrails.selectorLabels" -}}
app.kubernetes.io/name: guardrails
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "guardrails.tlsSecret" -}}
{{- if .Values.tls.certManager.enabled -}}
{{ include "guardrails.fullname" . }}-tls
{{- else -}}
{{ required "tls.secretName is required when tls.certManager.enabled is false" .Values.tls.secretName }}
{{- end -}}
{{- end -}}

{{- define "guardrails.namespaceSelector" -}}
namespaceSelector:
  matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values:
        - kube-system
        - {{ .Release.Namespace }}
        {{- range .Values.webhook.excludeNamespaces }}
        - {{ . }}
        {{- end }}
{{- end -}}

{{- define "guardrails.clientConfig" -}}
clientConfig:
  service:
    name: {{ include "guardrails.fullname" .root }}
    namespace: {{ .root.Release.Namespace }}
    path: {{ .path }}
    port: {{ .root.Values.service.port }}
  {{- if not .root.Values.tls.certManager.enabled }}
  caBundle: {{ required "tls.caBundle is required when tls.certManager.enabled is false" .root.Values.tls.caBundle }}
  {{- end }}
{{- end -}}

{{- define "guardrails.caInjection" -}}
{{- if .Values.tls.certManager.enabled }}
annotations:
  cert-manager.io/inject-ca-from: {{ .Release.Namespace }}/{{ include "guardrails.fullname" . }}
{{- end }}
{{- end -}}
