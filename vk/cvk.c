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

// create_device_object calls f, a vkCreate... function of device-level objects (non-dispatchable
// handles), with info and no allocator.
static int32_t create_device_object(vkattn_pfn f, vkattn_dispatchable device, const void *info, uint64_t *object) {
	return ((int32_t(*)(vkattn_dispatchable, const void *, const void *, uint64_t *))f)(device, info, NULL, object);
}

int32_t vkattn_create_timeline(vkattn_pfn f, vkattn_dispatchable device, uint64_t initial, uint64_t *semaphore) {
	vkattn_semaphore_type_create_info type = {
		.sType = 1000207002, // VK_STRUCTURE_TYPE_SEMAPHORE_TYPE_CREATE_INFO
		.semaphoreType = 1,  // VK_SEMAPHORE_TYPE_TIMELINE
		.initialValue = initial,
	};
	vkattn_semaphore_create_info info = {.sType = 9, .pNext = &type}; // VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO
	return create_device_object(f, device, &info, semaphore);
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

int32_t vkattn_create_instance(vkattn_pfn f, const char *app, uint32_t api, uint32_t nlayers,
	const char *const *layers, uint32_t nexts, const char *const *exts, vkattn_dispatchable *instance) {
	vkattn_application_info appInfo = {
		.sType = 0, // VK_STRUCTURE_TYPE_APPLICATION_INFO
		.pApplicationName = app,
		.pEngineName = app,
		.apiVersion = api,
	};
	vkattn_instance_create_info info = {
		.sType = 1, // VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO
		.pApplicationInfo = &appInfo,
		.enabledLayerCount = nlayers,
		.ppEnabledLayerNames = layers,
		.enabledExtensionCount = nexts,
		.ppEnabledExtensionNames = exts,
	};
	return ((int32_t(*)(const vkattn_instance_create_info *, const void *, vkattn_dispatchable *))f)(
		&info, NULL, instance);
}

int32_t vkattn_create_device(vkattn_pfn f, vkattn_dispatchable phys, const void *next, uint32_t nqueues,
	const uint32_t *families, const uint32_t *counts, uint32_t nexts, const char *const *exts,
	vkattn_dispatchable *device) {
	uint32_t most = 1;
	for (uint32_t i = 0; i < nqueues; i++) {
		most = counts[i] > most ? counts[i] : most;
	}
	float priorities[most];
	for (uint32_t i = 0; i < most; i++) {
		priorities[i] = 1;
	}
	vkattn_device_queue_create_info queues[nqueues > 0 ? nqueues : 1];
	for (uint32_t i = 0; i < nqueues; i++) {
		queues[i] = (vkattn_device_queue_create_info){
			.sType = 2, // VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO
			.queueFamilyIndex = families[i],
			.queueCount = counts[i],
			.pQueuePriorities = priorities,
		};
	}
	vkattn_device_create_info info = {
		.sType = 3, // VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO
		.pNext = next,
		.queueCreateInfoCount = nqueues,
		.pQueueCreateInfos = queues,
		.enabledExtensionCount = nexts,
		.ppEnabledExtensionNames = exts,
	};
	return ((int32_t(*)(vkattn_dispatchable, const vkattn_device_create_info *, const void *, vkattn_dispatchable *))f)(
		phys, &info, NULL, device);
}

int32_t vkattn_create_storage_set_layout(vkattn_pfn f, vkattn_dispatchable device, uint32_t n, uint64_t *layout) {
	// On the heap: n comes from the caller, and a large one would overflow the stack.
	vkattn_descriptor_set_layout_binding *bindings = calloc(n > 0 ? n : 1, sizeof *bindings);
	if (bindings == NULL) {
		return -1; // VK_ERROR_OUT_OF_HOST_MEMORY
	}
	for (uint32_t i = 0; i < n; i++) {
		bindings[i] = (vkattn_descriptor_set_layout_binding){
			.binding = i,
			.descriptorType = 7, // VK_DESCRIPTOR_TYPE_STORAGE_BUFFER
			.descriptorCount = 1,
			.stageFlags = 0x20, // VK_SHADER_STAGE_COMPUTE_BIT
		};
	}
	vkattn_descriptor_set_layout_create_info info = {
		.sType = 32, // VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO
		.bindingCount = n,
		.pBindings = n > 0 ? bindings : NULL,
	};
	int32_t r = create_device_object(f, device, &info, layout);
	free(bindings);
	return r;
}

int32_t vkattn_create_pipeline_layout(vkattn_pfn f, vkattn_dispatchable device, uint64_t setLayout,
	uint32_t pushSize, uint64_t *layout) {
	vkattn_push_constant_range push = {.stageFlags = 0x20, .size = pushSize}; // VK_SHADER_STAGE_COMPUTE_BIT
	vkattn_pipeline_layout_create_info info = {
		.sType = 30, // VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO
		.setLayoutCount = 1,
		.pSetLayouts = &setLayout,
		.pushConstantRangeCount = pushSize > 0 ? 1 : 0,
		.pPushConstantRanges = pushSize > 0 ? &push : NULL,
	};
	return create_device_object(f, device, &info, layout);
}

int32_t vkattn_create_storage_descriptor_pool(vkattn_pfn f, vkattn_dispatchable device, uint32_t maxSets,
	uint32_t descriptors, uint64_t *pool) {
	vkattn_descriptor_pool_size size = {.type = 7, .descriptorCount = descriptors}; // VK_DESCRIPTOR_TYPE_STORAGE_BUFFER
	vkattn_descriptor_pool_create_info info = {
		.sType = 33, // VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO
		.flags = 1,  // VK_DESCRIPTOR_POOL_CREATE_FREE_DESCRIPTOR_SET_BIT
		.maxSets = maxSets,
		.poolSizeCount = 1,
		.pPoolSizes = &size,
	};
	return create_device_object(f, device, &info, pool);
}
