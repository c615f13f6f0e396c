"""The Kubernetes session launcher: each session is a StatefulSet of one pod with a volume for
its workspace, a Service in front of it and a Secret with its environment.

Hibernating scales the StatefulSet to zero: the pod goes, the volume (a PersistentVolumeClaim
made from the StatefulSet's claim template) stays, and scaling back to one mounts it again.
Credentials (the server's token, the user's environment and granted connections) reach the
container through the Secret (``envFrom``), never as values in the pod spec, which anyone
allowed to read StatefulSets or Pods could see. The Service and the Secret are owned by the
StatefulSet, so deleting it by hand takes them along; the volume is deleted only on purge.

One module per concern: :mod:`.manifests` builds the objects, :mod:`.status` reads how a start
goes from the pod and its events, :mod:`.registry` asks an image's registry whether it has the
image, and :mod:`.launcher` makes the API calls.
"""

from nbplane.sessions.launchers.kubernetes.launcher import KubernetesLauncher

__all__ = ["KubernetesLauncher"]
