// Package vk's own C layer: the loader, the Vulkan entry points that github.com/goki/vulkan
// does not wrap (the *2 queries, debug utils, cooperative-matrix properties, timeline
// semaphores), and the calls whose arrays must not be the binding's C copies, which its
// finalizers may free while the driver reads or fills them (docs/ARCHITECTURE.md lists them). It
// declares, under its own vkattn_ names, the few handle and structure types it needs, including
// structures newer than the binding's 1.3.239 headers. It includes no Vulkan header: every
// structure below copies the member layout of the Vulkan specification, and the _Static_asserts
// at the end pin its size and member offsets to the values the specification's layout gives on
// LP64 targets.
#ifndef VKATTN_CVK_H
#define VKATTN_CVK_H
#include <stddef.h>
#include <stdint.h>

typedef void *vkattn_dispatchable; // VkInstance, VkPhysicalDevice, VkDevice, ...
typedef void (*vkattn_pfn)(void);

typedef uint32_t vkattn_bool32;  // VkBool32
typedef uint64_t vkattn_size;    // VkDeviceSize
typedef int32_t vkattn_stype;    // VkStructureType (an enum: 32 bits)

// VkBaseOutStructure: the head every link of a pNext chain starts with.
typedef struct vkattn_base_out {
	vkattn_stype sType;
	struct vkattn_base_out *pNext;
} vkattn_base_out;

// VkPhysicalDeviceFeatures (Vulkan 1.0): 55 VkBool32 members.
typedef struct {
	vkattn_bool32 robustBufferAccess;
	vkattn_bool32 fullDrawIndexUint32;
	vkattn_bool32 imageCubeArray;
	vkattn_bool32 independentBlend;
	vkattn_bool32 geometryShader;
	vkattn_bool32 tessellationShader;
	vkattn_bool32 sampleRateShading;
	vkattn_bool32 dualSrcBlend;
	vkattn_bool32 logicOp;
	vkattn_bool32 multiDrawIndirect;
	vkattn_bool32 drawIndirectFirstInstance;
	vkattn_bool32 depthClamp;
	vkattn_bool32 depthBiasClamp;
	vkattn_bool32 fillModeNonSolid;
	vkattn_bool32 depthBounds;
	vkattn_bool32 wideLines;
	vkattn_bool32 largePoints;
	vkattn_bool32 alphaToOne;
	vkattn_bool32 multiViewport;
	vkattn_bool32 samplerAnisotropy;
	vkattn_bool32 textureCompressionETC2;
	vkattn_bool32 textureCompressionASTC_LDR;
	vkattn_bool32 textureCompressionBC;
	vkattn_bool32 occlusionQueryPrecise;
	vkattn_bool32 pipelineStatisticsQuery;
	vkattn_bool32 vertexPipelineStoresAndAtomics;
	vkattn_bool32 fragmentStoresAndAtomics;
	vkattn_bool32 shaderTessellationAndGeometryPointSize;
	vkattn_bool32 shaderImageGatherExtended;
	vkattn_bool32 shaderStorageImageExtendedFormats;
	vkattn_bool32 shaderStorageImageMultisample;
	vkattn_bool32 shaderStorageImageReadWithoutFormat;
	vkattn_bool32 shaderStorageImageWriteWithoutFormat;
	vkattn_bool32 shaderUniformBufferArrayDynamicIndexing;
	vkattn_bool32 shaderSampledImageArrayDynamicIndexing;
	vkattn_bool32 shaderStorageBufferArrayDynamicIndexing;
	vkattn_bool32 shaderStorageImageArrayDynamicIndexing;
	vkattn_bool32 shaderClipDistance;
	vkattn_bool32 shaderCullDistance;
	vkattn_bool32 shaderFloat64;
	vkattn_bool32 shaderInt64;
	vkattn_bool32 shaderInt16;
	vkattn_bool32 shaderResourceResidency;
	vkattn_bool32 shaderResourceMinLod;
	vkattn_bool32 sparseBinding;
	vkattn_bool32 sparseResidencyBuffer;
	vkattn_bool32 sparseResidencyImage2D;
	vkattn_bool32 sparseResidencyImage3D;
	vkattn_bool32 sparseResidency2Samples;
	vkattn_bool32 sparseResidency4Samples;
	vkattn_bool32 sparseResidency8Samples;
	vkattn_bool32 sparseResidency16Samples;
	vkattn_bool32 sparseResidencyAliased;
	vkattn_bool32 variableMultisampleRate;
	vkattn_bool32 inheritedQueries;
} vkattn_physical_device_features;

// VkPhysicalDeviceFeatures2 (1.1).
typedef struct {
	vkattn_stype sType;
	void *pNext;
	vkattn_physical_device_features features;
} vkattn_physical_device_features2;

// VkPhysicalDevice16BitStorageFeatures (1.1).
typedef struct {
	vkattn_stype sType;
	void *pNext;
	vkattn_bool32 storageBuffer16BitAccess;
	vkattn_bool32 uniformAndStorageBuffer16BitAccess;
	vkattn_bool32 storagePushConstant16;
	vkattn_bool32 storageInputOutput16;
} vkattn_16bit_storage_features;

// VkPhysicalDeviceShaderFloat16Int8Features (1.2).
typedef struct {
	vkattn_stype sType;
	void *pNext;
	vkattn_bool32 shaderFloat16;
	vkattn_bool32 shaderInt8;
} vkattn_float16_int8_features;

// VkPhysicalDevice8BitStorageFeatures (1.2).
typedef struct {
	vkattn_stype sType;
	void *pNext;
	vkattn_bool32 storageBuffer8BitAccess;
	vkattn_bool32 uniformAndStorageBuffer8BitAccess;
	vkattn_bool32 storagePushConstant8;
} vkattn_8bit_storage_features;

// VkPhysicalDeviceTimelineSemaphoreFeatures (1.2).
typedef struct {
	vkattn_stype sType;
	void *pNext;
	vkattn_bool32 timelineSemaphore;
} vkattn_timeline_semaphore_features;

// VkPhysicalDeviceSubgroupSizeControlFeatures (1.3).
typedef struct {
	vkattn_stype sType;
	void *pNext;
	vkattn_bool32 subgroupSizeControl;
	vkattn_bool32 computeFullSubgroups;
} vkattn_subgroup_size_control_features;

// VkPhysicalDeviceShaderIntegerDotProductFeatures (1.3).
typedef struct {
	vkattn_stype sType;
	void *pNext;
	vkattn_bool32 shaderIntegerDotProduct;
} vkattn_integer_dot_product_features;

// VkPhysicalDeviceVulkanMemoryModelFeatures (1.2).
typedef struct {
	vkattn_stype sType;
	void *pNext;
	vkattn_bool32 vulkanMemoryModel;
	vkattn_bool32 vulkanMemoryModelDeviceScope;
	vkattn_bool32 vulkanMemoryModelAvailabilityVisibilityChains;
} vkattn_vulkan_memory_model_features;

// VkPhysicalDeviceMaintenance4Features (1.3).
typedef struct {
	vkattn_stype sType;
	void *pNext;
	vkattn_bool32 maintenance4;
} vkattn_maintenance4_features;

// VkPhysicalDeviceCooperativeMatrixFeaturesKHR (VK_KHR_cooperative_matrix).
typedef struct {
	vkattn_stype sType;
	void *pNext;
	vkattn_bool32 cooperativeMatrix;
	vkattn_bool32 cooperativeMatrixRobustBufferAccess;
} vkattn_cooperative_matrix_features_khr;

// VkPhysicalDeviceCooperativeMatrixPropertiesKHR (VK_KHR_cooperative_matrix).
typedef struct {
	vkattn_stype sType;
	void *pNext;
	uint32_t cooperativeMatrixSupportedStages; // VkShaderStageFlags
} vkattn_cooperative_matrix_device_properties_khr;

// VkCooperativeMatrixPropertiesKHR (VK_KHR_cooperative_matrix): one element of the array
// vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR fills.
typedef struct {
	vkattn_stype sType;
	void *pNext;
	uint32_t MSize;
	uint32_t NSize;
	uint32_t KSize;
	int32_t AType;      // VkComponentTypeKHR
	int32_t BType;      // VkComponentTypeKHR
	int32_t CType;      // VkComponentTypeKHR
	int32_t ResultType; // VkComponentTypeKHR
	vkattn_bool32 saturatingAccumulation;
	int32_t scope; // VkScopeKHR
} vkattn_cooperative_matrix_properties_khr;

// VkPhysicalDeviceCooperativeMatrix2FeaturesNV (VK_NV_cooperative_matrix2).
typedef struct {
	vkattn_stype sType;
	void *pNext;
	vkattn_bool32 cooperativeMatrixWorkgroupScope;
	vkattn_bool32 cooperativeMatrixFlexibleDimensions;
	vkattn_bool32 cooperativeMatrixReductions;
	vkattn_bool32 cooperativeMatrixConversions;
	vkattn_bool32 cooperativeMatrixPerElementOperations;
	vkattn_bool32 cooperativeMatrixTensorAddressing;
	vkattn_bool32 cooperativeMatrixBlockLoads;
} vkattn_cooperative_matrix2_features_nv;

// VkPhysicalDeviceCooperativeMatrix2PropertiesNV (VK_NV_cooperative_matrix2).
typedef struct {
	vkattn_stype sType;
	void *pNext;
	uint32_t cooperativeMatrixWorkgroupScopeMaxWorkgroupSize;
	uint32_t cooperativeMatrixFlexibleDimensionsMaxDimension;
	uint32_t cooperativeMatrixWorkgroupScopeReservedSharedMemory;
} vkattn_cooperative_matrix2_properties_nv;

// VkCooperativeMatrixFlexibleDimensionsPropertiesNV (VK_NV_cooperative_matrix2): one element of
// the array vkGetPhysicalDeviceCooperativeMatrixFlexibleDimensionsPropertiesNV fills.
typedef struct {
	vkattn_stype sType;
	void *pNext;
	uint32_t MGranularity;
	uint32_t NGranularity;
	uint32_t KGranularity;
	int32_t AType;      // VkComponentTypeKHR
	int32_t BType;      // VkComponentTypeKHR
	int32_t CType;      // VkComponentTypeKHR
	int32_t ResultType; // VkComponentTypeKHR
	vkattn_bool32 saturatingAccumulation;
	int32_t scope; // VkScopeKHR
	uint32_t workgroupInvocations;
} vkattn_cooperative_matrix_flexible_dimensions_properties_nv;

// VkPhysicalDevicePipelineExecutablePropertiesFeaturesKHR (VK_KHR_pipeline_executable_properties).
typedef struct {
	vkattn_stype sType;
	void *pNext;
	vkattn_bool32 pipelineExecutableInfo;
} vkattn_pipeline_executable_features;

// VkPipelineInfoKHR.
typedef struct {
	vkattn_stype sType;
	const void *pNext;
	uint64_t pipeline; // VkPipeline
} vkattn_pipeline_info;

// VkPipelineExecutablePropertiesKHR.
typedef struct {
	vkattn_stype sType;
	void *pNext;
	uint32_t stages; // VkShaderStageFlags
	char name[256];
	char description[256];
	uint32_t subgroupSize;
} vkattn_pipeline_executable_properties;

// VkPipelineExecutableInfoKHR.
typedef struct {
	vkattn_stype sType;
	const void *pNext;
	uint64_t pipeline; // VkPipeline
	uint32_t executableIndex;
} vkattn_pipeline_executable_info;

// VkPipelineExecutableStatisticKHR; value is VkPipelineExecutableStatisticValueKHR.
typedef struct {
	vkattn_stype sType;
	void *pNext;
	char name[256];
	char description[256];
	int32_t format; // VkPipelineExecutableStatisticFormatKHR
	union {
		vkattn_bool32 b32;
		int64_t i64;
		uint64_t u64;
		double f64;
	} value;
} vkattn_pipeline_executable_statistic;

// VkPhysicalDeviceShaderBfloat16FeaturesKHR (VK_KHR_shader_bfloat16).
typedef struct {
	vkattn_stype sType;
	void *pNext;
	vkattn_bool32 shaderBFloat16Type;
	vkattn_bool32 shaderBFloat16DotProduct;
	vkattn_bool32 shaderBFloat16CooperativeMatrix;
} vkattn_shader_bfloat16_features_khr;

// VkPhysicalDeviceProperties, with VkPhysicalDeviceLimits (504 bytes, 8-aligned) left opaque:
// vk reads the limits through the binding's vkGetPhysicalDeviceProperties.
typedef struct {
	uint32_t apiVersion;
	uint32_t driverVersion;
	uint32_t vendorID;
	uint32_t deviceID;
	int32_t deviceType; // VkPhysicalDeviceType
	char deviceName[256];
	uint8_t pipelineCacheUUID[16];
	uint64_t limits[504 / 8]; // VkPhysicalDeviceLimits
	vkattn_bool32 sparseProperties[5]; // VkPhysicalDeviceSparseProperties
} vkattn_physical_device_properties;

// VkPhysicalDeviceProperties2 (1.1).
typedef struct {
	vkattn_stype sType;
	void *pNext;
	vkattn_physical_device_properties properties;
} vkattn_physical_device_properties2;

// VkPhysicalDeviceSubgroupProperties (1.1).
typedef struct {
	vkattn_stype sType;
	void *pNext;
	uint32_t subgroupSize;
	uint32_t supportedStages;     // VkShaderStageFlags
	uint32_t supportedOperations; // VkSubgroupFeatureFlags
	vkattn_bool32 quadOperationsInAllStages;
} vkattn_subgroup_properties;

// VkPhysicalDeviceMaintenance3Properties (1.1).
typedef struct {
	vkattn_stype sType;
	void *pNext;
	uint32_t maxPerSetDescriptors;
	vkattn_size maxMemoryAllocationSize;
} vkattn_maintenance3_properties;

// VkPhysicalDeviceDriverProperties (1.2).
typedef struct {
	vkattn_stype sType;
	void *pNext;
	int32_t driverID; // VkDriverId
	char driverName[256];
	char driverInfo[256];
	uint8_t conformanceVersion[4]; // VkConformanceVersion: major, minor, subminor, patch
} vkattn_driver_properties;

// VkPhysicalDeviceSubgroupSizeControlProperties (1.3).
typedef struct {
	vkattn_stype sType;
	void *pNext;
	uint32_t minSubgroupSize;
	uint32_t maxSubgroupSize;
	uint32_t maxComputeWorkgroupSubgroups;
	uint32_t requiredSubgroupSizeStages; // VkShaderStageFlags
} vkattn_subgroup_size_control_properties;

// VkPhysicalDeviceShaderIntegerDotProductProperties (1.3): 30 VkBool32 members; vk reads one.
typedef struct {
	vkattn_stype sType;
	void *pNext;
	vkattn_bool32 integerDotProduct8BitUnsignedAccelerated;
	vkattn_bool32 integerDotProduct8BitSignedAccelerated;
	vkattn_bool32 integerDotProduct8BitMixedSignednessAccelerated;
	vkattn_bool32 integerDotProduct4x8BitPackedUnsignedAccelerated;
	vkattn_bool32 integerDotProduct4x8BitPackedSignedAccelerated;
	vkattn_bool32 integerDotProduct4x8BitPackedMixedSignednessAccelerated;
	vkattn_bool32 integerDotProduct16BitUnsignedAccelerated;
	vkattn_bool32 integerDotProduct16BitSignedAccelerated;
	vkattn_bool32 integerDotProduct16BitMixedSignednessAccelerated;
	vkattn_bool32 integerDotProduct32BitUnsignedAccelerated;
	vkattn_bool32 integerDotProduct32BitSignedAccelerated;
	vkattn_bool32 integerDotProduct32BitMixedSignednessAccelerated;
	vkattn_bool32 integerDotProduct64BitUnsignedAccelerated;
	vkattn_bool32 integerDotProduct64BitSignedAccelerated;
	vkattn_bool32 integerDotProduct64BitMixedSignednessAccelerated;
	vkattn_bool32 integerDotProductAccumulatingSaturating8BitUnsignedAccelerated;
	vkattn_bool32 integerDotProductAccumulatingSaturating8BitSignedAccelerated;
	vkattn_bool32 integerDotProductAccumulatingSaturating8BitMixedSignednessAccelerated;
	vkattn_bool32 integerDotProductAccumulatingSaturating4x8BitPackedUnsignedAccelerated;
	vkattn_bool32 integerDotProductAccumulatingSaturating4x8BitPackedSignedAccelerated;
	vkattn_bool32 integerDotProductAccumulatingSaturating4x8BitPackedMixedSignednessAccelerated;
	vkattn_bool32 integerDotProductAccumulatingSaturating16BitUnsignedAccelerated;
	vkattn_bool32 integerDotProductAccumulatingSaturating16BitSignedAccelerated;
	vkattn_bool32 integerDotProductAccumulatingSaturating16BitMixedSignednessAccelerated;
	vkattn_bool32 integerDotProductAccumulatingSaturating32BitUnsignedAccelerated;
	vkattn_bool32 integerDotProductAccumulatingSaturating32BitSignedAccelerated;
	vkattn_bool32 integerDotProductAccumulatingSaturating32BitMixedSignednessAccelerated;
	vkattn_bool32 integerDotProductAccumulatingSaturating64BitUnsignedAccelerated;
	vkattn_bool32 integerDotProductAccumulatingSaturating64BitSignedAccelerated;
	vkattn_bool32 integerDotProductAccumulatingSaturating64BitMixedSignednessAccelerated;
} vkattn_integer_dot_product_properties;

// VkMemoryType and VkMemoryHeap.
typedef struct {
	uint32_t propertyFlags; // VkMemoryPropertyFlags
	uint32_t heapIndex;
} vkattn_memory_type;

typedef struct {
	vkattn_size size;
	uint32_t flags; // VkMemoryHeapFlags
} vkattn_memory_heap;

// VkPhysicalDeviceMemoryProperties (VK_MAX_MEMORY_TYPES 32, VK_MAX_MEMORY_HEAPS 16).
typedef struct {
	uint32_t memoryTypeCount;
	vkattn_memory_type memoryTypes[32];
	uint32_t memoryHeapCount;
	vkattn_memory_heap memoryHeaps[16];
} vkattn_physical_device_memory_properties;

// VkPhysicalDeviceMemoryProperties2 (1.1).
typedef struct {
	vkattn_stype sType;
	void *pNext;
	vkattn_physical_device_memory_properties memoryProperties;
} vkattn_physical_device_memory_properties2;

// VkPhysicalDeviceMemoryBudgetPropertiesEXT (VK_EXT_memory_budget).
typedef struct {
	vkattn_stype sType;
	void *pNext;
	vkattn_size heapBudget[16];
	vkattn_size heapUsage[16];
} vkattn_memory_budget_properties;

// VkSpecializationMapEntry, VkSpecializationInfo, VkPipelineShaderStageCreateInfo and
// VkComputePipelineCreateInfo, built in C memory: the binding's conversion of these frees its C
// copies of nested arrays from finalizers that can run while the driver still reads them.
typedef struct {
	uint32_t constantID;
	uint32_t offset;
	size_t size;
} vkattn_specialization_map_entry;

typedef struct {
	uint32_t mapEntryCount;
	const vkattn_specialization_map_entry *pMapEntries;
	size_t dataSize;
	const void *pData;
} vkattn_specialization_info;

typedef struct {
	vkattn_stype sType;
	const void *pNext;
	uint32_t flags;
	uint32_t stage;     // VkShaderStageFlagBits
	uint64_t module;    // VkShaderModule
	const char *pName;
	const vkattn_specialization_info *pSpecializationInfo;
} vkattn_pipeline_shader_stage_create_info;

typedef struct {
	vkattn_stype sType;
	const void *pNext;
	uint32_t flags;
	vkattn_pipeline_shader_stage_create_info stage;
	uint64_t layout;             // VkPipelineLayout
	uint64_t basePipelineHandle; // VkPipeline
	int32_t basePipelineIndex;
} vkattn_compute_pipeline_create_info;

// VkPipelineShaderStageRequiredSubgroupSizeCreateInfo (1.3).
typedef struct {
	vkattn_stype sType;
	void *pNext;
	uint32_t requiredSubgroupSize;
} vkattn_required_subgroup_size_create_info;

// VkSemaphoreTypeCreateInfo (1.2), chained to a VkSemaphoreCreateInfo.
typedef struct {
	vkattn_stype sType;
	const void *pNext;
	int32_t semaphoreType; // VkSemaphoreType: 1 is VK_SEMAPHORE_TYPE_TIMELINE
	uint64_t initialValue;
} vkattn_semaphore_type_create_info;

// VkSemaphoreCreateInfo.
typedef struct {
	vkattn_stype sType;
	const void *pNext;
	uint32_t flags;
} vkattn_semaphore_create_info;

// VkTimelineSemaphoreSubmitInfo (1.2), chained to a VkSubmitInfo or VkBindSparseInfo.
typedef struct {
	vkattn_stype sType;
	const void *pNext;
	uint32_t waitSemaphoreValueCount;
	const uint64_t *pWaitSemaphoreValues;
	uint32_t signalSemaphoreValueCount;
	const uint64_t *pSignalSemaphoreValues;
} vkattn_timeline_semaphore_submit_info;

// VkSemaphoreWaitInfo (1.2).
typedef struct {
	vkattn_stype sType;
	const void *pNext;
	uint32_t flags;
	uint32_t semaphoreCount;
	const uint64_t *pSemaphores;
	const uint64_t *pValues;
} vkattn_semaphore_wait_info;

// VkSemaphoreSignalInfo (1.2).
typedef struct {
	vkattn_stype sType;
	const void *pNext;
	uint64_t semaphore;
	uint64_t value;
} vkattn_semaphore_signal_info;

// VkSubmitInfo (handles are 64-bit or pointers; command buffers are dispatchable).
typedef struct {
	vkattn_stype sType;
	const void *pNext;
	uint32_t waitSemaphoreCount;
	const uint64_t *pWaitSemaphores;
	const uint32_t *pWaitDstStageMask;
	uint32_t commandBufferCount;
	const vkattn_dispatchable *pCommandBuffers;
	uint32_t signalSemaphoreCount;
	const uint64_t *pSignalSemaphores;
} vkattn_submit_info;

// VkSparseMemoryBind.
typedef struct {
	vkattn_size resourceOffset;
	vkattn_size size;
	uint64_t memory; // VkDeviceMemory; 0 unbinds
	vkattn_size memoryOffset;
	uint32_t flags;
} vkattn_sparse_memory_bind;

// VkSparseBufferMemoryBindInfo.
typedef struct {
	uint64_t buffer; // VkBuffer
	uint32_t bindCount;
	const vkattn_sparse_memory_bind *pBinds;
} vkattn_sparse_buffer_bind_info;

// VkBindSparseInfo.
typedef struct {
	vkattn_stype sType;
	const void *pNext;
	uint32_t waitSemaphoreCount;
	const uint64_t *pWaitSemaphores;
	uint32_t bufferBindCount;
	const vkattn_sparse_buffer_bind_info *pBufferBinds;
	uint32_t imageOpaqueBindCount;
	const void *pImageOpaqueBinds;
	uint32_t imageBindCount;
	const void *pImageBinds;
	uint32_t signalSemaphoreCount;
	const uint64_t *pSignalSemaphores;
} vkattn_bind_sparse_info;

// VkDescriptorBufferInfo.
typedef struct {
	uint64_t buffer; // VkBuffer
	vkattn_size offset;
	vkattn_size range;
} vkattn_descriptor_buffer_info;

// VkWriteDescriptorSet, for buffer descriptors.
typedef struct {
	vkattn_stype sType;
	const void *pNext;
	uint64_t dstSet; // VkDescriptorSet
	uint32_t dstBinding;
	uint32_t dstArrayElement;
	uint32_t descriptorCount;
	int32_t descriptorType; // VkDescriptorType
	const void *pImageInfo;
	const vkattn_descriptor_buffer_info *pBufferInfo;
	const uint64_t *pTexelBufferView;
} vkattn_write_descriptor_set;

// VkMemoryBarrier.
typedef struct {
	vkattn_stype sType;
	const void *pNext;
	uint32_t srcAccessMask;
	uint32_t dstAccessMask;
} vkattn_memory_barrier;

// VkBufferCopy.
typedef struct {
	vkattn_size srcOffset;
	vkattn_size dstOffset;
	vkattn_size size;
} vkattn_buffer_copy;

// VkLayerProperties.
typedef struct {
	char layerName[256];
	uint32_t specVersion;
	uint32_t implementationVersion;
	char description[256];
} vkattn_layer_properties;

// VkExtensionProperties.
typedef struct {
	char extensionName[256];
	uint32_t specVersion;
} vkattn_extension_properties;

// VkQueueFamilyProperties.
typedef struct {
	uint32_t queueFlags; // VkQueueFlags
	uint32_t queueCount;
	uint32_t timestampValidBits;
	uint32_t minImageTransferGranularity[3]; // VkExtent3D
} vkattn_queue_family_properties;

// VkApplicationInfo.
typedef struct {
	vkattn_stype sType;
	const void *pNext;
	const char *pApplicationName;
	uint32_t applicationVersion;
	const char *pEngineName;
	uint32_t engineVersion;
	uint32_t apiVersion;
} vkattn_application_info;

// VkInstanceCreateInfo.
typedef struct {
	vkattn_stype sType;
	const void *pNext;
	uint32_t flags;
	const vkattn_application_info *pApplicationInfo;
	uint32_t enabledLayerCount;
	const char *const *ppEnabledLayerNames;
	uint32_t enabledExtensionCount;
	const char *const *ppEnabledExtensionNames;
} vkattn_instance_create_info;

// VkDeviceQueueCreateInfo.
typedef struct {
	vkattn_stype sType;
	const void *pNext;
	uint32_t flags;
	uint32_t queueFamilyIndex;
	uint32_t queueCount;
	const float *pQueuePriorities;
} vkattn_device_queue_create_info;

// VkDeviceCreateInfo.
typedef struct {
	vkattn_stype sType;
	const void *pNext;
	uint32_t flags;
	uint32_t queueCreateInfoCount;
	const vkattn_device_queue_create_info *pQueueCreateInfos;
	uint32_t enabledLayerCount;
	const char *const *ppEnabledLayerNames;
	uint32_t enabledExtensionCount;
	const char *const *ppEnabledExtensionNames;
	const vkattn_physical_device_features *pEnabledFeatures;
} vkattn_device_create_info;

// VkDescriptorSetLayoutBinding.
typedef struct {
	uint32_t binding;
	int32_t descriptorType; // VkDescriptorType
	uint32_t descriptorCount;
	uint32_t stageFlags;
	const uint64_t *pImmutableSamplers;
} vkattn_descriptor_set_layout_binding;

// VkDescriptorSetLayoutCreateInfo.
typedef struct {
	vkattn_stype sType;
	const void *pNext;
	uint32_t flags;
	uint32_t bindingCount;
	const vkattn_descriptor_set_layout_binding *pBindings;
} vkattn_descriptor_set_layout_create_info;

// VkPushConstantRange.
typedef struct {
	uint32_t stageFlags;
	uint32_t offset;
	uint32_t size;
} vkattn_push_constant_range;

// VkPipelineLayoutCreateInfo.
typedef struct {
	vkattn_stype sType;
	const void *pNext;
	uint32_t flags;
	uint32_t setLayoutCount;
	const uint64_t *pSetLayouts; // VkDescriptorSetLayout
	uint32_t pushConstantRangeCount;
	const vkattn_push_constant_range *pPushConstantRanges;
} vkattn_pipeline_layout_create_info;

// VkDescriptorPoolSize.
typedef struct {
	int32_t type; // VkDescriptorType
	uint32_t descriptorCount;
} vkattn_descriptor_pool_size;

// VkDescriptorPoolCreateInfo.
typedef struct {
	vkattn_stype sType;
	const void *pNext;
	uint32_t flags;
	uint32_t maxSets;
	uint32_t poolSizeCount;
	const vkattn_descriptor_pool_size *pPoolSizes;
} vkattn_descriptor_pool_create_info;

// vkattn_load dlopens name and returns vkGetInstanceProcAddr, or NULL with *err set.
void *vkattn_load(const char *name, const char **err);
vkattn_pfn vkattn_instance_proc(vkattn_dispatchable instance, const char *name);

void vkattn_get_features2(vkattn_pfn f, vkattn_dispatchable phys, void *chain);
void vkattn_get_properties2(vkattn_pfn f, vkattn_dispatchable phys, void *chain);
void vkattn_get_memory_properties2(vkattn_pfn f, vkattn_dispatchable phys, void *chain);
int32_t vkattn_coopmat_properties(vkattn_pfn f, vkattn_dispatchable phys, uint32_t *count,
	vkattn_cooperative_matrix_properties_khr *props);
int32_t vkattn_coopmat_flexible_properties(vkattn_pfn f, vkattn_dispatchable phys, uint32_t *count,
	vkattn_cooperative_matrix_flexible_dimensions_properties_nv *props);

int32_t vkattn_create_compute_pipeline(vkattn_pfn f, vkattn_dispatchable device, uint64_t cache,
	const vkattn_compute_pipeline_create_info *info, uint64_t *pipeline);
vkattn_pfn vkattn_device_proc(vkattn_pfn getDeviceProcAddr, vkattn_dispatchable device, const char *name);
int32_t vkattn_pipeline_executables(vkattn_pfn f, vkattn_dispatchable device, const vkattn_pipeline_info *info,
	uint32_t *count, vkattn_pipeline_executable_properties *props);
int32_t vkattn_pipeline_statistics(vkattn_pfn f, vkattn_dispatchable device, const vkattn_pipeline_executable_info *info,
	uint32_t *count, vkattn_pipeline_executable_statistic *stats);

int32_t vkattn_create_messenger(vkattn_pfn create, vkattn_dispatchable instance, uintptr_t handle, uint64_t *messenger);
void vkattn_destroy_messenger(vkattn_pfn destroy, vkattn_dispatchable instance, uint64_t messenger);

// Timeline semaphores (Vulkan 1.2 core): f is vkCreateSemaphore, vkDestroySemaphore,
// vkGetSemaphoreCounterValue, vkWaitSemaphores or vkSignalSemaphore.
int32_t vkattn_create_timeline(vkattn_pfn f, vkattn_dispatchable device, uint64_t initial, uint64_t *semaphore);
void vkattn_destroy_semaphore(vkattn_pfn f, vkattn_dispatchable device, uint64_t semaphore);
int32_t vkattn_semaphore_value(vkattn_pfn f, vkattn_dispatchable device, uint64_t semaphore, uint64_t *value);
int32_t vkattn_wait_semaphore(vkattn_pfn f, vkattn_dispatchable device, uint64_t semaphore, uint64_t value, uint64_t timeout);
int32_t vkattn_signal_semaphore(vkattn_pfn f, vkattn_dispatchable device, uint64_t semaphore, uint64_t value);

// vkattn_queue_submit submits one command buffer (f is vkQueueSubmit) that first waits, at all
// commands, for the n timeline semaphores sems to reach values, and signals fence.
int32_t vkattn_queue_submit(vkattn_pfn f, vkattn_dispatchable queue, vkattn_dispatchable cmd, uint32_t n,
	const uint64_t *sems, const uint64_t *values, uint64_t fence);

// vkattn_queue_bind_sparse submits one VkBindSparseInfo (f is vkQueueBindSparse) of n buffer
// binds (binds[i] to buffers[i]; runs of the same buffer share one VkSparseBufferMemoryBindInfo)
// that first waits for the nwait timeline semaphores waits to reach waitValues, then signals
// signal (a timeline semaphore, if not 0) with signalValue and fence (if not 0).
int32_t vkattn_queue_bind_sparse(vkattn_pfn f, vkattn_dispatchable queue, uint32_t n, const uint64_t *buffers,
	const vkattn_sparse_memory_bind *binds, uint32_t nwait, const uint64_t *waits, const uint64_t *waitValues,
	uint64_t signal, uint64_t signalValue, uint64_t fence);

// vkattn_update_buffer_descriptors writes n storage-buffer descriptors of set (f is
// vkUpdateDescriptorSets): binding i gets ranges[i] bytes of buffers[i] from offsets[i]. The
// structures live on the C stack for the call, out of reach of Go's collector.
void vkattn_update_buffer_descriptors(vkattn_pfn f, vkattn_dispatchable device, uint64_t set, uint32_t n,
	const uint64_t *buffers, const uint64_t *offsets, const uint64_t *ranges);

// vkattn_cmd_memory_barrier records one global memory barrier (f is vkCmdPipelineBarrier).
void vkattn_cmd_memory_barrier(vkattn_pfn f, vkattn_dispatchable cmd, uint32_t srcStages, uint32_t dstStages,
	uint32_t srcAccess, uint32_t dstAccess);

// vkattn_cmd_copy_buffer records a copy of size bytes from src at srcOffset to dst at dstOffset
// (f is vkCmdCopyBuffer).
void vkattn_cmd_copy_buffer(vkattn_pfn f, vkattn_dispatchable cmd, uint64_t src, uint64_t dst, uint64_t srcOffset,
	uint64_t dstOffset, uint64_t size);

// Start-up enumerations (f is vkEnumerateInstanceLayerProperties,
// vkEnumerateInstanceExtensionProperties, vkEnumerateDeviceExtensionProperties or
// vkGetPhysicalDeviceQueueFamilyProperties): the driver fills props, C memory the caller owns
// (the binding's wrappers hand it C arrays that a finalizer may free while it writes them).
int32_t vkattn_enumerate_instance_layers(vkattn_pfn f, uint32_t *count, vkattn_layer_properties *props);
int32_t vkattn_enumerate_instance_extensions(vkattn_pfn f, const char *layer, uint32_t *count,
	vkattn_extension_properties *props);
int32_t vkattn_enumerate_device_extensions(vkattn_pfn f, vkattn_dispatchable phys, uint32_t *count,
	vkattn_extension_properties *props);
void vkattn_get_queue_families(vkattn_pfn f, vkattn_dispatchable phys, uint32_t *count,
	vkattn_queue_family_properties *props);

// Creation calls whose create infos hold arrays (f is the vkCreate... function named): the
// structures live on the C stack for the call (the binding converts nested arrays into C copies
// that its finalizers may free before the call has read them).
//
// vkattn_create_instance creates an instance for the application app asking for API version
// api, with the given layers and extensions.
int32_t vkattn_create_instance(vkattn_pfn f, const char *app, uint32_t api, uint32_t nlayers,
	const char *const *layers, uint32_t nexts, const char *const *exts, vkattn_dispatchable *instance);
// vkattn_create_device creates a device of phys with nqueues queue create infos (counts[i] queues
// of family families[i], all of priority 1), the extensions exts and the pNext chain next.
int32_t vkattn_create_device(vkattn_pfn f, vkattn_dispatchable phys, const void *next, uint32_t nqueues,
	const uint32_t *families, const uint32_t *counts, uint32_t nexts, const char *const *exts,
	vkattn_dispatchable *device);
// vkattn_create_storage_set_layout creates a descriptor set layout whose bindings 0..n-1 are
// one storage buffer each, for compute.
int32_t vkattn_create_storage_set_layout(vkattn_pfn f, vkattn_dispatchable device, uint32_t n, uint64_t *layout);
// vkattn_create_pipeline_layout creates a pipeline layout of one set layout and, if pushSize is
// not 0, pushSize bytes of push constants for compute.
int32_t vkattn_create_pipeline_layout(vkattn_pfn f, vkattn_dispatchable device, uint64_t setLayout,
	uint32_t pushSize, uint64_t *layout);
// vkattn_create_storage_descriptor_pool creates a descriptor pool of maxSets sets that can be
// freed one by one, with descriptors storage-buffer descriptors.
int32_t vkattn_create_storage_descriptor_pool(vkattn_pfn f, vkattn_dispatchable device, uint32_t maxSets,
	uint32_t descriptors, uint64_t *pool);

// Sizes and offsets from the specification's layout (LP64: 8-byte pointers and VkDeviceSize).
#define VKATTN_ASSERT_SIZE(T, n) _Static_assert(sizeof(T) == (n), "sizeof " #T " is not " #n)
#define VKATTN_ASSERT_OFF(T, m, n) _Static_assert(offsetof(T, m) == (n), "offsetof " #T "." #m " is not " #n)
_Static_assert(sizeof(void *) == 8, "vkattn's C layer assumes 64-bit pointers");

VKATTN_ASSERT_SIZE(vkattn_base_out, 16);
VKATTN_ASSERT_OFF(vkattn_base_out, pNext, 8);

VKATTN_ASSERT_SIZE(vkattn_physical_device_features, 55 * 4);
VKATTN_ASSERT_OFF(vkattn_physical_device_features, shaderFloat64, 39 * 4);
VKATTN_ASSERT_OFF(vkattn_physical_device_features, shaderInt64, 40 * 4);
VKATTN_ASSERT_OFF(vkattn_physical_device_features, shaderInt16, 41 * 4);
VKATTN_ASSERT_OFF(vkattn_physical_device_features, sparseBinding, 44 * 4);
VKATTN_ASSERT_OFF(vkattn_physical_device_features, sparseResidencyBuffer, 45 * 4);
VKATTN_ASSERT_OFF(vkattn_physical_device_features, inheritedQueries, 54 * 4);
VKATTN_ASSERT_SIZE(vkattn_physical_device_features2, 240); // 16 + 55 * 4, padded to 8
VKATTN_ASSERT_OFF(vkattn_physical_device_features2, features, 16);

VKATTN_ASSERT_SIZE(vkattn_16bit_storage_features, 32);
VKATTN_ASSERT_OFF(vkattn_16bit_storage_features, storageBuffer16BitAccess, 16);
VKATTN_ASSERT_SIZE(vkattn_float16_int8_features, 24);
VKATTN_ASSERT_OFF(vkattn_float16_int8_features, shaderFloat16, 16);
VKATTN_ASSERT_OFF(vkattn_float16_int8_features, shaderInt8, 20);
VKATTN_ASSERT_SIZE(vkattn_8bit_storage_features, 32);
VKATTN_ASSERT_OFF(vkattn_8bit_storage_features, storageBuffer8BitAccess, 16);
VKATTN_ASSERT_SIZE(vkattn_timeline_semaphore_features, 24);
VKATTN_ASSERT_OFF(vkattn_timeline_semaphore_features, timelineSemaphore, 16);
VKATTN_ASSERT_SIZE(vkattn_subgroup_size_control_features, 24);
VKATTN_ASSERT_OFF(vkattn_subgroup_size_control_features, subgroupSizeControl, 16);
VKATTN_ASSERT_OFF(vkattn_subgroup_size_control_features, computeFullSubgroups, 20);
VKATTN_ASSERT_SIZE(vkattn_integer_dot_product_features, 24);
VKATTN_ASSERT_OFF(vkattn_integer_dot_product_features, shaderIntegerDotProduct, 16);
VKATTN_ASSERT_SIZE(vkattn_vulkan_memory_model_features, 32);
VKATTN_ASSERT_OFF(vkattn_vulkan_memory_model_features, vulkanMemoryModel, 16);
VKATTN_ASSERT_SIZE(vkattn_maintenance4_features, 24);
VKATTN_ASSERT_OFF(vkattn_maintenance4_features, maintenance4, 16);
VKATTN_ASSERT_SIZE(vkattn_cooperative_matrix_features_khr, 24);
VKATTN_ASSERT_OFF(vkattn_cooperative_matrix_features_khr, cooperativeMatrix, 16);
VKATTN_ASSERT_OFF(vkattn_cooperative_matrix_features_khr, cooperativeMatrixRobustBufferAccess, 20);
VKATTN_ASSERT_SIZE(vkattn_cooperative_matrix_device_properties_khr, 24);
VKATTN_ASSERT_OFF(vkattn_cooperative_matrix_device_properties_khr, cooperativeMatrixSupportedStages, 16);
VKATTN_ASSERT_SIZE(vkattn_cooperative_matrix_properties_khr, 56);
VKATTN_ASSERT_OFF(vkattn_cooperative_matrix_properties_khr, MSize, 16);
VKATTN_ASSERT_OFF(vkattn_cooperative_matrix_properties_khr, NSize, 20);
VKATTN_ASSERT_OFF(vkattn_cooperative_matrix_properties_khr, KSize, 24);
VKATTN_ASSERT_OFF(vkattn_cooperative_matrix_properties_khr, AType, 28);
VKATTN_ASSERT_OFF(vkattn_cooperative_matrix_properties_khr, BType, 32);
VKATTN_ASSERT_OFF(vkattn_cooperative_matrix_properties_khr, CType, 36);
VKATTN_ASSERT_OFF(vkattn_cooperative_matrix_properties_khr, ResultType, 40);
VKATTN_ASSERT_OFF(vkattn_cooperative_matrix_properties_khr, saturatingAccumulation, 44);
VKATTN_ASSERT_OFF(vkattn_cooperative_matrix_properties_khr, scope, 48);
VKATTN_ASSERT_SIZE(vkattn_cooperative_matrix2_features_nv, 48);
VKATTN_ASSERT_OFF(vkattn_cooperative_matrix2_features_nv, cooperativeMatrixWorkgroupScope, 16);
VKATTN_ASSERT_OFF(vkattn_cooperative_matrix2_features_nv, cooperativeMatrixBlockLoads, 40);
VKATTN_ASSERT_SIZE(vkattn_cooperative_matrix2_properties_nv, 32);
VKATTN_ASSERT_OFF(vkattn_cooperative_matrix2_properties_nv, cooperativeMatrixWorkgroupScopeMaxWorkgroupSize, 16);
VKATTN_ASSERT_OFF(vkattn_cooperative_matrix2_properties_nv, cooperativeMatrixWorkgroupScopeReservedSharedMemory, 24);
VKATTN_ASSERT_SIZE(vkattn_cooperative_matrix_flexible_dimensions_properties_nv, 56);
VKATTN_ASSERT_OFF(vkattn_cooperative_matrix_flexible_dimensions_properties_nv, MGranularity, 16);
VKATTN_ASSERT_OFF(vkattn_cooperative_matrix_flexible_dimensions_properties_nv, AType, 28);
VKATTN_ASSERT_OFF(vkattn_cooperative_matrix_flexible_dimensions_properties_nv, scope, 48);
VKATTN_ASSERT_OFF(vkattn_cooperative_matrix_flexible_dimensions_properties_nv, workgroupInvocations, 52);
VKATTN_ASSERT_SIZE(vkattn_specialization_map_entry, 16);
VKATTN_ASSERT_OFF(vkattn_specialization_map_entry, size, 8);
VKATTN_ASSERT_SIZE(vkattn_specialization_info, 32);
VKATTN_ASSERT_OFF(vkattn_specialization_info, pMapEntries, 8);
VKATTN_ASSERT_OFF(vkattn_specialization_info, pData, 24);
VKATTN_ASSERT_SIZE(vkattn_pipeline_shader_stage_create_info, 48);
VKATTN_ASSERT_OFF(vkattn_pipeline_shader_stage_create_info, flags, 16);
VKATTN_ASSERT_OFF(vkattn_pipeline_shader_stage_create_info, module, 24);
VKATTN_ASSERT_OFF(vkattn_pipeline_shader_stage_create_info, pSpecializationInfo, 40);
VKATTN_ASSERT_SIZE(vkattn_compute_pipeline_create_info, 96);
VKATTN_ASSERT_OFF(vkattn_compute_pipeline_create_info, stage, 24);
VKATTN_ASSERT_OFF(vkattn_compute_pipeline_create_info, layout, 72);
VKATTN_ASSERT_OFF(vkattn_compute_pipeline_create_info, basePipelineIndex, 88);
VKATTN_ASSERT_SIZE(vkattn_pipeline_executable_features, 24);
VKATTN_ASSERT_OFF(vkattn_pipeline_executable_features, pipelineExecutableInfo, 16);
VKATTN_ASSERT_SIZE(vkattn_pipeline_info, 24);
VKATTN_ASSERT_OFF(vkattn_pipeline_info, pipeline, 16);
VKATTN_ASSERT_SIZE(vkattn_pipeline_executable_properties, 536);
VKATTN_ASSERT_OFF(vkattn_pipeline_executable_properties, name, 20);
VKATTN_ASSERT_OFF(vkattn_pipeline_executable_properties, subgroupSize, 532);
VKATTN_ASSERT_SIZE(vkattn_pipeline_executable_info, 32);
VKATTN_ASSERT_OFF(vkattn_pipeline_executable_info, executableIndex, 24);
VKATTN_ASSERT_SIZE(vkattn_pipeline_executable_statistic, 544);
VKATTN_ASSERT_OFF(vkattn_pipeline_executable_statistic, format, 528);
VKATTN_ASSERT_OFF(vkattn_pipeline_executable_statistic, value, 536);
VKATTN_ASSERT_SIZE(vkattn_shader_bfloat16_features_khr, 32);
VKATTN_ASSERT_OFF(vkattn_shader_bfloat16_features_khr, shaderBFloat16Type, 16);
VKATTN_ASSERT_OFF(vkattn_shader_bfloat16_features_khr, shaderBFloat16CooperativeMatrix, 24);

VKATTN_ASSERT_SIZE(vkattn_physical_device_properties, 824);
VKATTN_ASSERT_OFF(vkattn_physical_device_properties, deviceName, 20);
VKATTN_ASSERT_OFF(vkattn_physical_device_properties, pipelineCacheUUID, 276);
VKATTN_ASSERT_OFF(vkattn_physical_device_properties, limits, 296);
VKATTN_ASSERT_OFF(vkattn_physical_device_properties, sparseProperties, 800);
VKATTN_ASSERT_SIZE(vkattn_physical_device_properties2, 16 + 824);
VKATTN_ASSERT_SIZE(vkattn_subgroup_properties, 32);
VKATTN_ASSERT_OFF(vkattn_subgroup_properties, subgroupSize, 16);
VKATTN_ASSERT_OFF(vkattn_subgroup_properties, supportedStages, 20);
VKATTN_ASSERT_OFF(vkattn_subgroup_properties, supportedOperations, 24);
VKATTN_ASSERT_SIZE(vkattn_maintenance3_properties, 32);
VKATTN_ASSERT_OFF(vkattn_maintenance3_properties, maxMemoryAllocationSize, 24);
VKATTN_ASSERT_SIZE(vkattn_driver_properties, 16 + 4 + 256 + 256 + 4);
VKATTN_ASSERT_OFF(vkattn_driver_properties, driverName, 20);
VKATTN_ASSERT_OFF(vkattn_driver_properties, driverInfo, 276);
VKATTN_ASSERT_OFF(vkattn_driver_properties, conformanceVersion, 532);
VKATTN_ASSERT_SIZE(vkattn_subgroup_size_control_properties, 32);
VKATTN_ASSERT_OFF(vkattn_subgroup_size_control_properties, minSubgroupSize, 16);
VKATTN_ASSERT_OFF(vkattn_subgroup_size_control_properties, maxSubgroupSize, 20);
VKATTN_ASSERT_SIZE(vkattn_integer_dot_product_properties, 16 + 30 * 4);
VKATTN_ASSERT_OFF(vkattn_integer_dot_product_properties, integerDotProduct4x8BitPackedSignedAccelerated, 16 + 4 * 4);
VKATTN_ASSERT_SIZE(vkattn_physical_device_memory_properties, 520);
VKATTN_ASSERT_OFF(vkattn_physical_device_memory_properties, memoryHeapCount, 260);
VKATTN_ASSERT_OFF(vkattn_physical_device_memory_properties, memoryHeaps, 264);
VKATTN_ASSERT_SIZE(vkattn_physical_device_memory_properties2, 16 + 520);
VKATTN_ASSERT_SIZE(vkattn_memory_budget_properties, 16 + 2 * 16 * 8);
VKATTN_ASSERT_OFF(vkattn_memory_budget_properties, heapUsage, 16 + 128);
VKATTN_ASSERT_SIZE(vkattn_required_subgroup_size_create_info, 24);
VKATTN_ASSERT_OFF(vkattn_required_subgroup_size_create_info, requiredSubgroupSize, 16);
VKATTN_ASSERT_SIZE(vkattn_semaphore_type_create_info, 32);
VKATTN_ASSERT_OFF(vkattn_semaphore_type_create_info, initialValue, 24);
VKATTN_ASSERT_SIZE(vkattn_semaphore_create_info, 24);
VKATTN_ASSERT_SIZE(vkattn_timeline_semaphore_submit_info, 48);
VKATTN_ASSERT_OFF(vkattn_timeline_semaphore_submit_info, pWaitSemaphoreValues, 24);
VKATTN_ASSERT_OFF(vkattn_timeline_semaphore_submit_info, pSignalSemaphoreValues, 40);
VKATTN_ASSERT_SIZE(vkattn_semaphore_wait_info, 40);
VKATTN_ASSERT_OFF(vkattn_semaphore_wait_info, pSemaphores, 24);
VKATTN_ASSERT_OFF(vkattn_semaphore_wait_info, pValues, 32);
VKATTN_ASSERT_SIZE(vkattn_semaphore_signal_info, 32);
VKATTN_ASSERT_SIZE(vkattn_submit_info, 72);
VKATTN_ASSERT_OFF(vkattn_submit_info, pWaitDstStageMask, 32);
VKATTN_ASSERT_OFF(vkattn_submit_info, pCommandBuffers, 48);
VKATTN_ASSERT_OFF(vkattn_submit_info, pSignalSemaphores, 64);
VKATTN_ASSERT_SIZE(vkattn_sparse_memory_bind, 40);
VKATTN_ASSERT_OFF(vkattn_sparse_memory_bind, flags, 32);
VKATTN_ASSERT_SIZE(vkattn_sparse_buffer_bind_info, 24);
VKATTN_ASSERT_OFF(vkattn_bind_sparse_info, pBufferBinds, 40);
VKATTN_ASSERT_OFF(vkattn_bind_sparse_info, pSignalSemaphores, 88);
VKATTN_ASSERT_SIZE(vkattn_bind_sparse_info, 96);
VKATTN_ASSERT_SIZE(vkattn_descriptor_buffer_info, 24);
VKATTN_ASSERT_SIZE(vkattn_write_descriptor_set, 64);
VKATTN_ASSERT_OFF(vkattn_write_descriptor_set, dstSet, 16);
VKATTN_ASSERT_OFF(vkattn_write_descriptor_set, descriptorCount, 32);
VKATTN_ASSERT_OFF(vkattn_write_descriptor_set, pBufferInfo, 48);
VKATTN_ASSERT_SIZE(vkattn_memory_barrier, 24);
VKATTN_ASSERT_OFF(vkattn_memory_barrier, dstAccessMask, 20);
VKATTN_ASSERT_SIZE(vkattn_buffer_copy, 24);
VKATTN_ASSERT_OFF(vkattn_layer_properties, description, 264);
VKATTN_ASSERT_SIZE(vkattn_layer_properties, 520);
VKATTN_ASSERT_SIZE(vkattn_extension_properties, 260);
VKATTN_ASSERT_OFF(vkattn_queue_family_properties, timestampValidBits, 8);
VKATTN_ASSERT_SIZE(vkattn_queue_family_properties, 24);
VKATTN_ASSERT_OFF(vkattn_application_info, pApplicationName, 16);
VKATTN_ASSERT_OFF(vkattn_application_info, pEngineName, 32);
VKATTN_ASSERT_OFF(vkattn_application_info, apiVersion, 44);
VKATTN_ASSERT_SIZE(vkattn_application_info, 48);
VKATTN_ASSERT_OFF(vkattn_instance_create_info, pApplicationInfo, 24);
VKATTN_ASSERT_OFF(vkattn_instance_create_info, ppEnabledLayerNames, 40);
VKATTN_ASSERT_OFF(vkattn_instance_create_info, enabledExtensionCount, 48);
VKATTN_ASSERT_OFF(vkattn_instance_create_info, ppEnabledExtensionNames, 56);
VKATTN_ASSERT_SIZE(vkattn_instance_create_info, 64);
VKATTN_ASSERT_OFF(vkattn_device_queue_create_info, queueFamilyIndex, 20);
VKATTN_ASSERT_OFF(vkattn_device_queue_create_info, queueCount, 24);
VKATTN_ASSERT_OFF(vkattn_device_queue_create_info, pQueuePriorities, 32);
VKATTN_ASSERT_SIZE(vkattn_device_queue_create_info, 40);
VKATTN_ASSERT_OFF(vkattn_device_create_info, queueCreateInfoCount, 20);
VKATTN_ASSERT_OFF(vkattn_device_create_info, pQueueCreateInfos, 24);
VKATTN_ASSERT_OFF(vkattn_device_create_info, enabledExtensionCount, 48);
VKATTN_ASSERT_OFF(vkattn_device_create_info, ppEnabledExtensionNames, 56);
VKATTN_ASSERT_OFF(vkattn_device_create_info, pEnabledFeatures, 64);
VKATTN_ASSERT_SIZE(vkattn_device_create_info, 72);
VKATTN_ASSERT_OFF(vkattn_descriptor_set_layout_binding, stageFlags, 12);
VKATTN_ASSERT_OFF(vkattn_descriptor_set_layout_binding, pImmutableSamplers, 16);
VKATTN_ASSERT_SIZE(vkattn_descriptor_set_layout_binding, 24);
VKATTN_ASSERT_OFF(vkattn_descriptor_set_layout_create_info, pBindings, 24);
VKATTN_ASSERT_SIZE(vkattn_descriptor_set_layout_create_info, 32);
VKATTN_ASSERT_SIZE(vkattn_push_constant_range, 12);
VKATTN_ASSERT_OFF(vkattn_pipeline_layout_create_info, pSetLayouts, 24);
VKATTN_ASSERT_OFF(vkattn_pipeline_layout_create_info, pushConstantRangeCount, 32);
VKATTN_ASSERT_OFF(vkattn_pipeline_layout_create_info, pPushConstantRanges, 40);
VKATTN_ASSERT_SIZE(vkattn_pipeline_layout_create_info, 48);
VKATTN_ASSERT_SIZE(vkattn_descriptor_pool_size, 8);
VKATTN_ASSERT_OFF(vkattn_descriptor_pool_create_info, maxSets, 20);
VKATTN_ASSERT_OFF(vkattn_descriptor_pool_create_info, poolSizeCount, 24);
VKATTN_ASSERT_OFF(vkattn_descriptor_pool_create_info, pPoolSizes, 32);
VKATTN_ASSERT_SIZE(vkattn_descriptor_pool_create_info, 40);
#endif
