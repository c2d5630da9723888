#include "cvk.h"
#include <dlfcn.h>
#include <stddef.h>
#include <stdlib.h>

typedef vkattn_pfn (*gipa_t)(vkattn_dispatchable, const char *);
static gipa_t gipa;

void *vkattn_load(const char *name, const char **err) {
	void *lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		*err = dlerror();
		return NULL;
	}
	gipa = (gipa_t)dlsym(lib, "vkGetInstanceProcAddr");
	if (!gipa) {
		*err = "vkGetInstanceProcAddr not found";
		return NULL;
	}
	return (void *)gipa;
}

vkattn_pfn vkattn_instance_proc(vkattn_dispatchable instance, const char *name) {
	return gipa ? gipa(instance, name) : NULL;
}

void vkattn_get_features2(vkattn_pfn f, vkattn_dispatchable phys, void *chain) {
	((void (*)(vkattn_dispatchable, void *))f)(phys, chain);
}

void vkattn_get_properties2(vkattn_pfn f, vkattn_dispatchable phys, void *chain) {
	((void (*)(vkattn_dispatchable, void *))f)(phys, chain);
}

void vkattn_get_memory_properties2(vkattn_pfn f, vkattn_dispatchable phys, void *chain) {
	((void (*)(vkattn_dispatchable, void *))f)(phys, chain);
}

int32_t vkattn_coopmat_properties(vkattn_pfn f, vkattn_dispatchable phys, uint32_t *count,
	vkattn_cooperative_matrix_properties_khr *props) {
	return ((int32_t(*)(vkattn_dispatchable, uint32_t *, void *))f)(phys, count, props);
}

int32_t vkattn_coopmat_flexible_properties(vkattn_pfn f, vkattn_dispatchable phys, uint32_t *count,
	vkattn_cooperative_matrix_flexible_dimensions_properties_nv *props) {
	return ((int32_t(*)(vkattn_dispatchable, uint32_t *, void *))f)(phys, count, props);
}

int32_t vkattn_create_compute_pipeline(vkattn_pfn f, vkattn_dispatchable device, uint64_t cache,
	const vkattn_compute_pipeline_create_info *info, uint64_t *pipeline) {
	return ((int32_t(*)(vkattn_dispatchable, uint64_t, uint32_t, const void *, const void *, uint64_t *))f)(
		device, cache, 1, info, NULL, pipeline);
}

vkattn_pfn vkattn_device_proc(vkattn_pfn getDeviceProcAddr, vkattn_dispatchable device, const char *name) {
	return ((vkattn_pfn(*)(vkattn_dispatchable, const char *))getDeviceProcAddr)(device, name);
}

int32_t vkattn_pipeline_executables(vkattn_pfn f, vkattn_dispatchable device, const vkattn_pipeline_info *info,
	uint32_t *count, vkattn_pipeline_executable_properties *props) {
	return ((int32_t(*)(vkattn_dispatchable, const void *, uint32_t *, void *))f)(device, info, count, props);
}

int32_t vkattn_pipeline_statistics(vkattn_pfn f, vkattn_dispatchable device, const vkattn_pipeline_executable_info *info,
	uint32_t *count, vkattn_pipeline_executable_statistic *stats) {
	return ((int32_t(*)(vkattn_dispatchable, const void *, uint32_t *, void *))f)(device, info, count, stats);
}

// VkDebugUtilsMessengerCallbackDataEXT, up to the fields read here.
typedef struct {
	int32_t sType;
	const void *pNext;
	uint32_t flags;
	const char *pMessageIdName;
	int32_t messageIdNumber;
	const char *pMessage;
} callback_data;

typedef struct {
	int32_t sType;
	const void *pNext;
	uint32_t flags;
	uint32_t messageSeverity;
	uint32_t messageType;
	void *pfnUserCallback;
	void *pUserData;
} messenger_info;

// Layouts of VkDebugUtilsMessengerCallbackDataEXT (up to pMessage) and
// VkDebugUtilsMessengerCreateInfoEXT from the specification.
_Static_assert(offsetof(callback_data, pMessageIdName) == 24, "callback_data.pMessageIdName");
_Static_assert(offsetof(callback_data, messageIdNumber) == 32, "callback_data.messageIdNumber");
_Static_assert(offsetof(callback_data, pMessage) == 40, "callback_data.pMessage");
_Static_assert(offsetof(messenger_info, messageSeverity) == 20, "messenger_info.messageSeverity");
_Static_assert(offsetof(messenger_info, pfnUserCallback) == 32, "messenger_info.pfnUserCallback");
_Static_assert(sizeof(messenger_info) == 48, "sizeof messenger_info");

extern void vkattnDebugMessage(uintptr_t handle, uint32_t severity, uint32_t type, char *id, char *msg);

static uint32_t debug_callback(uint32_t severity, uint32_t type, const callback_data *data, void *user) {
	vkattnDebugMessage((uintptr_t)user, severity, type, (char *)data->pMessageIdName, (char *)data->pMessage);
	return 0;
}

int32_t vkattn_create_messenger(vkattn_pfn create, vkattn_dispatchable instance, uintptr_t handle, uint64_t *messenger) {
	messenger_info info = {
		.sType = 1000128004, // VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT
		.messageSeverity = 0x1000 | 0x100 | 0x10, // error | warning | info
		.messageType = 0x1 | 0x2 | 0x4,            // general | validation | performance
		.pfnUserCallback = (void *)debug_callback,
		.pUserData = (void *)handle,
	};
	return ((int32_t(*)(vkattn_dispatchable, const messenger_info *, const void *, uint64_t *))create)(
		instance, &info, NULL, messenger);
}

void vkattn_destroy_messenger(vkattn_pfn destroy, vkattn_dispatchable instance, uint64_t messenger) {
	((void (*)(vkattn_dispatchable, uint64_t, const void *))destroy)(instance, messenger, NULL);
}

int32_t vkattn_create_timeline(vkattn_pfn f, vkattn_dispatchable device, uint64_t initial, uint64_t *semaphore) {
	vkattn_semaphore_type_create_info type = {
		.sType = 1000207002, // VK_STRUCTURE_TYPE_SEMAPHORE_TYPE_CREATE_INFO
		.semaphoreType = 1,  // VK_SEMAPHORE_TYPE_TIMELINE
		.initialValue = initial,
	};
	vkattn_semaphore_create_info info = {.sType = 9, .pNext = &type}; // VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO
	return ((int32_t(*)(vkattn_dispatchable, const void *, const void *, uint64_t *))f)(device, &info, NULL, semaphore);
}

void vkattn_destroy_semaphore(vkattn_pfn f, vkattn_dispatchable device, uint64_t semaphore) {
	((void (*)(vkattn_dispatchable, uint64_t, const void *))f)(device, semaphore, NULL);
}

int32_t vkattn_semaphore_value(vkattn_pfn f, vkattn_dispatchable device, uint64_t semaphore, uint64_t *value) {
	return ((int32_t(*)(vkattn_dispatchable, uint64_t, uint64_t *))f)(device, semaphore, value);
}

int32_t vkattn_wait_semaphore(vkattn_pfn f, vkattn_dispatchable device, uint64_t semaphore, uint64_t value, uint64_t timeout) {
	vkattn_semaphore_wait_info info = {
		.sType = 1000207004, // VK_STRUCTURE_TYPE_SEMAPHORE_WAIT_INFO
		.semaphoreCount = 1,
		.pSemaphores = &semaphore,
		.pValues = &value,
	};
	return ((int32_t(*)(vkattn_dispatchable, const void *, uint64_t))f)(device, &info, timeout);
}

int32_t vkattn_signal_semaphore(vkattn_pfn f, vkattn_dispatchable device, uint64_t semaphore, uint64_t value) {
	vkattn_semaphore_signal_info info = {
		.sType = 1000207005, // VK_STRUCTURE_TYPE_SEMAPHORE_SIGNAL_INFO
		.semaphore = semaphore,
		.value = value,
	};
	return ((int32_t(*)(vkattn_dispatchable, const void *))f)(device, &info);
}

int32_t vkattn_queue_submit(vkattn_pfn f, vkattn_dispatchable queue, vkattn_dispatchable cmd, uint32_t n,
	const uint64_t *sems, const uint64_t *values, uint64_t fence) {
	uint32_t stages[n > 0 ? n : 1];
	for (uint32_t i = 0; i < n; i++) {
		stages[i] = 0x00010000; // VK_PIPELINE_STAGE_ALL_COMMANDS_BIT
	}
	vkattn_timeline_semaphore_submit_info timeline = {
		.sType = 1000207003, // VK_STRUCTURE_TYPE_TIMELINE_SEMAPHORE_SUBMIT_INFO
		.waitSemaphoreValueCount = n,
		.pWaitSemaphoreValues = values,
	};
	vkattn_submit_info info = {
		.sType = 4, // VK_STRUCTURE_TYPE_SUBMIT_INFO
		.pNext = n > 0 ? &timeline : NULL,
		.waitSemaphoreCount = n,
		.pWaitSemaphores = sems,
		.pWaitDstStageMask = stages,
		.commandBufferCount = 1,
		.pCommandBuffers = &cmd,
	};
	return ((int32_t(*)(vkattn_dispatchable, uint32_t, const vkattn_submit_info *, uint64_t))f)(queue, 1, &info, fence);
}

int32_t vkattn_queue_bind_sparse(vkattn_pfn f, vkattn_dispatchable queue, uint32_t n, const uint64_t *buffers,
	const vkattn_sparse_memory_bind *binds, uint32_t nwait, const uint64_t *waits, const uint64_t *waitValues,
	uint64_t signal, uint64_t signalValue, uint64_t fence) {
	vkattn_sparse_buffer_bind_info *infos = malloc((size_t)(n > 0 ? n : 1) * sizeof *infos);
	if (!infos) {
		return -1; // VK_ERROR_OUT_OF_HOST_MEMORY
	}
	uint32_t m = 0;
	for (uint32_t i = 0; i < n; i++) {
		if (m > 0 && infos[m - 1].buffer == buffers[i]) {
			infos[m - 1].bindCount++;
			continue;
		}
		infos[m].buffer = buffers[i];
		infos[m].bindCount = 1;
		infos[m].pBinds = &binds[i];
		m++;
	}
	vkattn_timeline_semaphore_submit_info timeline = {
		.sType = 1000207003, // VK_STRUCTURE_TYPE_TIMELINE_SEMAPHORE_SUBMIT_INFO
		.waitSemaphoreValueCount = nwait,
		.pWaitSemaphoreValues = waitValues,
		.signalSemaphoreValueCount = signal ? 1 : 0,
		.pSignalSemaphoreValues = &signalValue,
	};
	vkattn_bind_sparse_info info = {
		.sType = 7, // VK_STRUCTURE_TYPE_BIND_SPARSE_INFO
		.pNext = (nwait > 0 || signal) ? &timeline : NULL,
		.waitSemaphoreCount = nwait,
		.pWaitSemaphores = waits,
		.bufferBindCount = m,
		.pBufferBinds = infos,
		.signalSemaphoreCount = signal ? 1 : 0,
		.pSignalSemaphores = &signal,
	};
	int32_t r = ((int32_t(*)(vkattn_dispatchable, uint32_t, const vkattn_bind_sparse_info *, uint64_t))f)(queue, 1, &info, fence);
	free(infos);
	return r;
}

void vkattn_update_buffer_descriptors(vkattn_pfn f, vkattn_dispatchable device, uint64_t set, uint32_t n,
	const uint64_t *buffers, const uint64_t *offsets, const uint64_t *ranges) {
	vkattn_descriptor_buffer_info infos[n > 0 ? n : 1];
	vkattn_write_descriptor_set writes[n > 0 ? n : 1];
	for (uint32_t i = 0; i < n; i++) {
		infos[i] = (vkattn_descriptor_buffer_info){.buffer = buffers[i], .offset = offsets[i], .range = ranges[i]};
		writes[i] = (vkattn_write_descriptor_set){
			.sType = 35, // VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET
			.dstSet = set,
			.dstBinding = i,
			.descriptorCount = 1,
			.descriptorType = 7, // VK_DESCRIPTOR_TYPE_STORAGE_BUFFER
			.pBufferInfo = &infos[i],
		};
	}
	((void (*)(vkattn_dispatchable, uint32_t, const vkattn_write_descriptor_set *, uint32_t, const void *))f)(
		device, n, writes, 0, NULL);
}

void vkattn_cmd_memory_barrier(vkattn_pfn f, vkattn_dispatchable cmd, uint32_t srcStages, uint32_t dstStages,
	uint32_t srcAccess, uint32_t dstAccess) {
	vkattn_memory_barrier barrier = {
		.sType = 46, // VK_STRUCTURE_TYPE_MEMORY_BARRIER
		.srcAccessMask = srcAccess,
		.dstAccessMask = dstAccess,
	};
	((void (*)(vkattn_dispatchable, uint32_t, uint32_t, uint32_t, uint32_t, const vkattn_memory_barrier *, uint32_t,
		const void *, uint32_t, const void *))f)(cmd, srcStages, dstStages, 0, 1, &barrier, 0, NULL, 0, NULL);
}

void vkattn_cmd_copy_buffer(vkattn_pfn f, vkattn_dispatchable cmd, uint64_t src, uint64_t dst, uint64_t srcOffset,
	uint64_t dstOffset, uint64_t size) {
	vkattn_buffer_copy region = {.srcOffset = srcOffset, .dstOffset = dstOffset, .size = size};
	((void (*)(vkattn_dispatchable, uint64_t, uint64_t, uint32_t, const vkattn_buffer_copy *))f)(cmd, src, dst, 1, &region);
}

int32_t vkattn_enumerate_instance_layers(vkattn_pfn f, uint32_t *count, vkattn_layer_properties *props) {
	return ((int32_t(*)(uint32_t *, vkattn_layer_properties *))f)(count, props);
}

int32_t vkattn_enumerate_instance_extensions(vkattn_pfn f, const char *layer, uint32_t *count,
	vkattn_extension_properties *props) {
	return ((int32_t(*)(const char *, uint32_t *, vkattn_extension_properties *))f)(layer, count, props);
}

int32_t vkattn_enumerate_device_extensions(vkattn_pfn f, vkattn_dispatchable phys, uint32_t *count,
	vkattn_extension_properties *props) {
	return ((int32_t(*)(vkattn_dispatchable, const char *, uint32_t *, vkattn_extension_properties *))f)(
		phys, NULL, count, props);
}

void vkattn_get_queue_families(vkattn_pfn f, vkattn_dispatchable phys, uint32_t *count,
	vkattn_queue_family_properties *props) {
	((void (*)(vkattn_dispatchable, uint32_t *, vkattn_queue_family_properties *))f)(phys, count, props);
}
