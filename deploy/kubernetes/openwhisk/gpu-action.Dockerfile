# The GPU action image: the CUDA build of the action (scripts/build-image.sh --cuda TAG) plus what
# the NVIDIA container runtime (runtimeClassName: nvidia in gpu-pod-template.json) needs to hand the
# node's GPUs to the container. OpenWhisk's pod builder replaces the pod template's container env and
# resources, so these must be in the image, and no `nvidia.com/gpu` request can be made per pod.
#   docker build -f deploy/kubernetes/openwhisk/gpu-action.Dockerfile --build-arg BASE=you/owtrain-action:0.1.0-cuda \
#       -t you/owtrain-action:0.1.0-gpu deploy/kubernetes/openwhisk
ARG BASE
FROM ${BASE}
ENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
