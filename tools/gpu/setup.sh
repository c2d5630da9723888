# Sourced by the GPU machine's scripts from the repo root: unpacks the Vulkan loader and
# validation layer carried in .gl/ and finds a driver manifest that gives a GPU (VK_DRIVER_FILES).
# NVIDIA's GLX-based manifest fails on a headless machine ("Could not get 'vkCreateInstance' via
# 'vk_icdGetInstanceProcAddr'"); the same driver through libEGL_nvidia works there, so a manifest
# naming it is the last candidate.
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
gpu_found() { bin/vkattn devices 2>&1 | grep -qiE 'nvidia|amd|radeon|intel'; }
if ! gpu_found; then
	egl=/tmp/nvidia_egl_icd.json
	printf '{"file_format_version":"1.0.1","ICD":{"library_path":"libEGL_nvidia.so.0","api_version":"1.4.312"}}\n' >"$egl"
	for icd in $(find / -xdev -name 'nvidia_icd*.json' 2>/dev/null) "$egl"; do
		export VK_DRIVER_FILES=$icd
		gpu_found && break
		unset VK_DRIVER_FILES
	done
fi
