// Package vk's own C layer: the loader and the Vulkan entry points that github.com/goki/vulkan
// does not wrap (the *2 queries, debug utils, cooperative-matrix properties). It declares only the
// few handle and struct types it needs; structures newer than the binding's headers are passed as
// raw sType/pNext chains built in Go.
#ifndef VKATTN_CVK_H
#define VKATTN_CVK_H
#include <stdint.h>

typedef void *vkattn_dispatchable; // VkInstance, VkPhysicalDevice, VkDevice, ...
typedef void (*vkattn_pfn)(void);

// vkattn_load dlopens name and returns vkGetInstanceProcAddr, or NULL with *err set.
void *vkattn_load(const char *name, const char **err);
vkattn_pfn vkattn_instance_proc(vkattn_dispatchable instance, const char *name);

void vkattn_get_features2(vkattn_pfn f, vkattn_dispatchable phys, void *chain);
void vkattn_get_properties2(vkattn_pfn f, vkattn_dispatchable phys, void *chain);
void vkattn_get_memory_properties2(vkattn_pfn f, vkattn_dispatchable phys, void *chain);
int32_t vkattn_coopmat_properties(vkattn_pfn f, vkattn_dispatchable phys, uint32_t *count, void *props);

int32_t vkattn_create_messenger(vkattn_pfn create, vkattn_dispatchable instance, uintptr_t handle, uint64_t *messenger);
void vkattn_destroy_messenger(vkattn_pfn destroy, vkattn_dispatchable instance, uint64_t messenger);
#endif
