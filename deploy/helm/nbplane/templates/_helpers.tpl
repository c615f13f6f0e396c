{{/* Names, labels and the parts every nbplane container shares. */}}

{{- define "nbplane.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "nbplane.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "nbplane.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "nbplane.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "nbplane.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nbplane.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "nbplane.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "nbplane.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "nbplane.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "nbplane.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "nbplane.secretName" -}}
{{- default (include "nbplane.fullname" .) .Values.existingSecret }}
{{- end }}

{{- define "nbplane.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "nbplane.webUrl" -}}
{{- printf "http://%s-web.%s.svc:%d" (include "nbplane.fullname" .) .Release.Namespace (int .Values.service.port) }}
{{- end }}

{{- define "nbplane.publicUrl" -}}
{{- if .Values.publicUrl }}
{{- .Values.publicUrl }}
{{- else if .Values.ingress.enabled }}
{{- printf "%s://%s" (ternary "https" "http" .Values.ingress.tls.enabled) .Values.ingress.host }}
{{- else }}
{{- include "nbplane.webUrl" . }}
{{- end }}
{{- end }}

{{/* The environment of every nbplane container: secrets by reference only, never as values. */}}
{{- define "nbplane.env" -}}
- name: NBPLANE_STORE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "nbplane.secretName" . }}
      key: store-url
- name: NBPLANE_DB_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "nbplane.secretName" . }}
      key: db-url
      optional: true
- name: NBPLANE_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "nbplane.secretName" . }}
      key: secret-key
- name: NBPLANE_ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "nbplane.secretName" . }}
      key: admin-token
- name: NBPLANE_ADMIN_USER
  value: {{ .Values.admin.user | quote }}
- name: NBPLANE_STORE_MIGRATE
  value: "false"
- name: NBPLANE_HOME
  value: /var/lib/nbplane
- name: NBPLANE_LOG_LEVEL
  value: {{ .Values.log.level | quote }}
- name: NBPLANE_LOG_FORMAT
  value: {{ .Values.log.format | quote }}
- name: NBPLANE_JOB_EXECUTOR
  value: kubernetes
- name: NBPLANE_SESSION_LAUNCHER
  value: kubernetes
- name: NBPLANE_KUBERNETES_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: NBPLANE_KUBERNETES_IMAGE
  value: {{ default (include "nbplane.image" .) .Values.jobs.image | quote }}
- name: NBPLANE_KUBERNETES_SESSION_IMAGE
  value: {{ printf "%s:%s" .Values.sessions.image.repository (default .Chart.AppVersion .Values.sessions.image.tag) | quote }}
- name: NBPLANE_KUBERNETES_SESSION_STORAGE
  value: {{ .Values.sessions.storage | quote }}
{{- with .Values.sessions.storageClass }}
- name: NBPLANE_KUBERNETES_SESSION_STORAGE_CLASS
  value: {{ . | quote }}
{{- end }}
- name: NBPLANE_PUBLIC_URL
  value: {{ include "nbplane.publicUrl" . | quote }}
- name: NBPLANE_JOB_SERVER_URL
  value: {{ default (include "nbplane.webUrl" .) .Values.internalUrl | quote }}
- name: NBPLANE_SESSION_PUBLIC_URL
  value: {{ default (include "nbplane.webUrl" .) .Values.internalUrl | quote }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* What every nbplane pod shares: security, scheduling, writable dirs (the root file system
     is read-only). */}}
{{- define "nbplane.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  - name: home
    emptyDir: {}
  - name: tmp
    emptyDir: {}
{{- end }}

{{- define "nbplane.volumeMounts" -}}
- name: home
  mountPath: /var/lib/nbplane
- name: tmp
  mountPath: /tmp
{{- end }}
