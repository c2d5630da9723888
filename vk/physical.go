package vk

/*
#include <stdlib.h>
#include "cvk.h"
*/
import "C"

import (
	"fmt"
	"unsafe"

	vk "github.com/goki/vulkan"
)

// Structure types used in pNext chains (values from the Vulkan registry).
const (
	stFeatures2              = 1000059000
	stProperties2            = 1000059001
	stMemoryProperties2      = 1000059006
	stSubgroupProps          = 1000094000
	stSubgroupSizeProps      = 1000225000
	stSubgroupSizeFeatures   = 1000225002
	stMaintenance3Props      = 1000168000
	stDriverProps            = 1000196000
	stFloat16Int8Features    = 1000082000
	st16BitStorageFeatures   = 1000083000
	st8BitStorageFeatures    = 1000177000
	stIntDotFeatures         = 1000280000
	stIntDotProps            = 1000280001
	stTimelineFeatures       = 1000207000
	stMemoryBudgetProps      = 1000237000
	stCoopMatFeatures        = 1000506000
	stCoopMatProps           = 1000506001
	stCoopMat2Features       = 1000593000
	stCoopMatFlexibleProps   = 1000593001
	stPipelineExecFeatures   = 1000269000
	stPipelineInfo           = 1000269001
	stPipelineExecProps      = 1000269002
	stPipelineExecInfo       = 1000269003
	stPipelineExecStatistic  = 1000269004
	stCoopMat2Props          = 1000593002
	stBFloat16Features       = 1000141000
	stRequiredSubgroupSizeCI = 1000225001
	stMaintenance4Features   = 1000413000
	stMemoryModelFeatures    = 1000211000
)

const (
	shaderStageCompute = 0x20 // VK_SHADER_STAGE_COMPUTE_BIT
	scopeSubgroup      = 3    // VK_SCOPE_SUBGROUP_KHR
	scopeWorkgroup     = 2    // VK_SCOPE_WORKGROUP_KHR
)

// Extensions vkattn enables when a device has them.
const (
	ExtCooperativeMatrix  = "VK_KHR_cooperative_matrix"
	ExtCooperativeMatrix2 = "VK_NV_cooperative_matrix2"
	ExtShaderBFloat16     = "VK_KHR_shader_bfloat16"
	ExtMemoryBudget       = "VK_EXT_memory_budget"
	// ExtPipelineExecutableProperties reports per-pipeline statistics (registers, spills, ...).
	ExtPipelineExecutableProperties = "VK_KHR_pipeline_executable_properties"
)

// DeviceType is VkPhysicalDeviceType.
type DeviceType uint32

// Device types.
const (
	DeviceOther DeviceType = iota
	DeviceIntegrated
	DeviceDiscrete
	DeviceVirtual
	DeviceCPU
)

func (t DeviceType) String() string {
	return [...]string{"other", "integrated", "discrete", "virtual", "cpu"}[min(int(t), 4)]
}

// Component types of cooperative matrices (VkComponentTypeKHR).
type ComponentType uint32

// Component types used by the attention kernels.
const (
	ComponentF16  ComponentType = 0
	ComponentF32  ComponentType = 1
	ComponentS8   ComponentType = 3
	ComponentS32  ComponentType = 5
	ComponentU8   ComponentType = 7
	ComponentBF16 ComponentType = 1000141000
)

func (c ComponentType) String() string {
	switch c {
	case ComponentF16:
		return "f16"
	case ComponentF32:
		return "f32"
	case ComponentS8:
		return "s8"
	case ComponentS32:
		return "s32"
	case ComponentU8:
		return "u8"
	case ComponentBF16:
		return "bf16"
	}
	return fmt.Sprintf("type%d", uint32(c))
}

// CoopMatShape is one entry of vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR.
type CoopMatShape struct {
	M, N, K         uint32
	A, B, C, Result ComponentType
	Saturating      bool
	SubgroupScope   bool
}

// CoopMatFlexible is one entry of vkGetPhysicalDeviceCooperativeMatrixFlexibleDimensionsPropertiesNV:
// matrices of any size that is a multiple of the granularity (M x N x K), with these component
// types, in workgroups of WorkgroupInvocations invocations (workgroup scope) or in one subgroup.
type CoopMatFlexible struct {
	M, N, K              uint32 // granularity
	A, B, C, Result      ComponentType
	Saturating           bool
	WorkgroupScope       bool
	WorkgroupInvocations uint32
}

// CoopMat2Limits are VkPhysicalDeviceCooperativeMatrix2PropertiesNV.
type CoopMat2Limits struct {
	MaxWorkgroupSize     uint32 // invocations of a workgroup using workgroup-scope matrices
	MaxDimension         uint32 // largest flexible matrix dimension
	ReservedSharedMemory uint32 // bytes of shared memory the driver keeps for workgroup-scope matrices
}

// MemoryHeap is one memory heap with its budget (from VK_EXT_memory_budget where present).
type MemoryHeap struct {
	Size        uint64
	DeviceLocal bool
	Budget      uint64 // 0 when unknown
	Usage       uint64
}

// Features are the optional capabilities vkattn looks at.
type Features struct {
	ShaderFloat16, ShaderInt8, ShaderInt16, ShaderInt64, ShaderFloat64 bool
	StorageBuffer16Bit, StorageBuffer8Bit                              bool
	SubgroupSizeControl, ComputeFullSubgroups                          bool
	IntegerDotProduct                                                  bool
	TimelineSemaphore                                                  bool
	Maintenance4                                                       bool // LocalSizeId: workgroup size from specialization constants
	VulkanMemoryModel                                                  bool // cooperative-matrix shaders use it
	SparseBinding, SparseResidencyBuffer                               bool
	CooperativeMatrix                                                  bool
	CooperativeMatrix2                                                 bool
	BFloat16, BFloat16CooperativeMatrix                                bool
	PipelineExecutableInfo                                             bool // statistics of compiled pipelines
}

// PhysicalInfo is everything vkattn reads about a physical device.
type PhysicalInfo struct {
	Index                      int
	Name                       string
	VendorID, DeviceID         uint32
	Type                       DeviceType
	APIVersion, DriverVersion  uint32
	DriverName, DriverInfo     string
	PipelineCacheUUID          [16]byte
	MaxSharedMemory            uint32
	MaxWorkgroupInvocations    uint32
	MaxWorkgroupSize           [3]uint32
	MaxWorkgroupCount          [3]uint32
	MaxStorageBufferRange      uint32
	MaxPushConstantsSize       uint32
	MinStorageBufferAlignment  uint64
	MaxMemoryAllocationSize    uint64
	TimestampPeriod            float32
	SparseAddressSpaceSize     uint64
	NonResidentStrict          bool // residencyNonResidentStrict (Device.NonResidentStrict)
	SubgroupSize               uint32
	MinSubgroupSize            uint32
	MaxSubgroupSize            uint32
	SubgroupOps                uint32 // VkSubgroupFeatureFlags
	SubgroupComputeStage       bool
	IntDot4x8PackedAccelerated bool
	Features                   Features
	Extensions                 map[string]bool
	CoopMatShapes              []CoopMatShape
	CoopMatFlexible            []CoopMatFlexible // VK_NV_cooperative_matrix2 flexible dimensions
	CoopMat2                   CoopMat2Limits
	Heaps                      []MemoryHeap
	ComputeFamily              int // -1 when the device has no compute queue
	TimestampBits              uint32
}

// Subgroup operation bits (VkSubgroupFeatureFlagBits).
const (
	SubgroupBasic      = 0x1
	SubgroupVote       = 0x2
	SubgroupArithmetic = 0x4
	SubgroupBallot     = 0x8
	SubgroupShuffle    = 0x10
)

// Version formats a packed Vulkan version.
func Version(v uint32) string { return fmt.Sprintf("%d.%d.%d", v>>22&0x7f, v>>12&0x3ff, v&0xfff) }

// PhysicalDevices lists the instance's devices with their properties.
func (in *Instance) PhysicalDevices() ([]PhysicalInfo, error) {
	if in.closed {
		return nil, ErrClosed
	}
	handles, err := in.physicalHandles()
	if err != nil {
		return nil, err
	}
	out := make([]PhysicalInfo, len(handles))
	for i, h := range handles {
		out[i] = in.describe(i, h)
	}
	return out, nil
}

func (in *Instance) physicalHandles() ([]vk.PhysicalDevice, error) {
	var n uint32
	if err := result("vkEnumeratePhysicalDevices", vk.EnumeratePhysicalDevices(in.handle, &n, nil)); err != nil {
		return nil, err
	}
	hs := make([]vk.PhysicalDevice, n)
	if n > 0 {
		if err := result("vkEnumeratePhysicalDevices", vk.EnumeratePhysicalDevices(in.handle, &n, hs)); err != nil {
			return nil, err
		}
	}
	return hs[:n], nil
}

// deviceExtensions lists the extensions a physical device offers.
func (in *Instance) deviceExtensions(h vk.PhysicalDevice) map[string]bool {
	fn := "vkEnumerateDeviceExtensionProperties"
	m := map[string]bool{}
	f := instanceProc(in.handle, fn)
	if f == nil {
		return m
	}
	props, _ := enumeratePlain(fn, func(n *C.uint32_t, p *C.vkattn_extension_properties) C.int32_t {
		return C.vkattn_enumerate_device_extensions(f, C.vkattn_dispatchable(unsafe.Pointer(h)), n, p)
	})
	for _, p := range props {
		m[cstring(p.extensionName[:])] = true
	}
	return m
}

// queueFamilies lists a physical device's queue families.
func (in *Instance) queueFamilies(h vk.PhysicalDevice) []C.vkattn_queue_family_properties {
	fn := "vkGetPhysicalDeviceQueueFamilyProperties"
	f := instanceProc(in.handle, fn)
	if f == nil {
		return nil
	}
	qs, _ := enumeratePlain(fn, func(n *C.uint32_t, p *C.vkattn_queue_family_properties) C.int32_t {
		C.vkattn_get_queue_families(f, C.vkattn_dispatchable(unsafe.Pointer(h)), n, p)
		return 0 // VK_SUCCESS: the query returns nothing
	})
	return qs
}

// featureChain is the VkPhysicalDeviceFeatures2 chain vkattn queries and enables, indices of
// its links, and which links a device of this API version and extension set may carry. Link 0
// is the VkPhysicalDeviceFeatures2; the others are -1 when absent.
type featureChain struct {
	chain
	f16i8, s16, s8, sgsize, intdot, timeline, maint4, memmodel, coopmat, coopmat2, bf16, pexec int
}

func newFeatureChain(api uint32, exts map[string]bool) *featureChain {
	c := &featureChain{f16i8: -1, s16: -1, s8: -1, sgsize: -1, intdot: -1, timeline: -1, maint4: -1, memmodel: -1, coopmat: -1, coopmat2: -1, bf16: -1, pexec: -1}
	c.add(stFeatures2, C.sizeof_vkattn_physical_device_features2)
	v11, v12, v13 := api >= vk.MakeVersion(1, 1, 0), api >= vk.MakeVersion(1, 2, 0), api >= vk.MakeVersion(1, 3, 0)
	if v11 {
		c.s16 = c.add(st16BitStorageFeatures, C.sizeof_vkattn_16bit_storage_features)
	}
	if v12 {
		c.f16i8 = c.add(stFloat16Int8Features, C.sizeof_vkattn_float16_int8_features)
		c.s8 = c.add(st8BitStorageFeatures, C.sizeof_vkattn_8bit_storage_features)
		c.timeline = c.add(stTimelineFeatures, C.sizeof_vkattn_timeline_semaphore_features)
		c.memmodel = c.add(stMemoryModelFeatures, C.sizeof_vkattn_vulkan_memory_model_features)
	}
	if v13 {
		c.sgsize = c.add(stSubgroupSizeFeatures, C.sizeof_vkattn_subgroup_size_control_features)
		c.intdot = c.add(stIntDotFeatures, C.sizeof_vkattn_integer_dot_product_features)
		c.maint4 = c.add(stMaintenance4Features, C.sizeof_vkattn_maintenance4_features)
	}
	if exts[ExtCooperativeMatrix] {
		c.coopmat = c.add(stCoopMatFeatures, C.sizeof_vkattn_cooperative_matrix_features_khr)
	}
	if exts[ExtCooperativeMatrix2] {
		c.coopmat2 = c.add(stCoopMat2Features, C.sizeof_vkattn_cooperative_matrix2_features_nv)
	}
	if exts[ExtShaderBFloat16] {
		c.bf16 = c.add(stBFloat16Features, C.sizeof_vkattn_shader_bfloat16_features_khr)
	}
	if exts[ExtPipelineExecutableProperties] {
		c.pexec = c.add(stPipelineExecFeatures, C.sizeof_vkattn_pipeline_executable_features)
	}
	return c
}

// core is the chain's VkPhysicalDeviceFeatures.
func (c *featureChain) core() *C.vkattn_physical_device_features {
	return &link[C.vkattn_physical_device_features2](&c.chain, 0).features
}

// opt returns link i as a *T, or nil when the chain does not carry it (i < 0).
func opt[T any](c *featureChain, i int) *T {
	if i < 0 {
		return nil
	}
	return link[T](&c.chain, i)
}

func (c *featureChain) features() Features {
	core := c.core()
	f := Features{
		ShaderFloat64:         cbool(core.shaderFloat64),
		ShaderInt64:           cbool(core.shaderInt64),
		ShaderInt16:           cbool(core.shaderInt16),
		SparseBinding:         cbool(core.sparseBinding),
		SparseResidencyBuffer: cbool(core.sparseResidencyBuffer),
	}
	if s := opt[C.vkattn_16bit_storage_features](c, c.s16); s != nil {
		f.StorageBuffer16Bit = cbool(s.storageBuffer16BitAccess)
	}
	if s := opt[C.vkattn_float16_int8_features](c, c.f16i8); s != nil {
		f.ShaderFloat16, f.ShaderInt8 = cbool(s.shaderFloat16), cbool(s.shaderInt8)
	}
	if s := opt[C.vkattn_8bit_storage_features](c, c.s8); s != nil {
		f.StorageBuffer8Bit = cbool(s.storageBuffer8BitAccess)
	}
	if s := opt[C.vkattn_timeline_semaphore_features](c, c.timeline); s != nil {
		f.TimelineSemaphore = cbool(s.timelineSemaphore)
	}
	if s := opt[C.vkattn_maintenance4_features](c, c.maint4); s != nil {
		f.Maintenance4 = cbool(s.maintenance4)
	}
	if s := opt[C.vkattn_vulkan_memory_model_features](c, c.memmodel); s != nil {
		f.VulkanMemoryModel = cbool(s.vulkanMemoryModel)
	}
	if s := opt[C.vkattn_subgroup_size_control_features](c, c.sgsize); s != nil {
		f.SubgroupSizeControl, f.ComputeFullSubgroups = cbool(s.subgroupSizeControl), cbool(s.computeFullSubgroups)
	}
	if s := opt[C.vkattn_integer_dot_product_features](c, c.intdot); s != nil {
		f.IntegerDotProduct = cbool(s.shaderIntegerDotProduct)
	}
	if s := opt[C.vkattn_cooperative_matrix_features_khr](c, c.coopmat); s != nil {
		f.CooperativeMatrix = cbool(s.cooperativeMatrix)
	}
	if s := opt[C.vkattn_cooperative_matrix2_features_nv](c, c.coopmat2); s != nil {
		// The coopmat2 kernels use workgroup scope, flexible sizes, reductions, conversions,
		// per-element functions and tensor addressing; block loads are not used.
		f.CooperativeMatrix2 = cbool(s.cooperativeMatrixWorkgroupScope) && cbool(s.cooperativeMatrixFlexibleDimensions) &&
			cbool(s.cooperativeMatrixReductions) && cbool(s.cooperativeMatrixConversions) &&
			cbool(s.cooperativeMatrixPerElementOperations) && cbool(s.cooperativeMatrixTensorAddressing)
	}
	if s := opt[C.vkattn_pipeline_executable_features](c, c.pexec); s != nil {
		f.PipelineExecutableInfo = cbool(s.pipelineExecutableInfo)
	}
	if s := opt[C.vkattn_shader_bfloat16_features_khr](c, c.bf16); s != nil {
		f.BFloat16, f.BFloat16CooperativeMatrix = cbool(s.shaderBFloat16Type), cbool(s.shaderBFloat16CooperativeMatrix)
	}
	return f
}

// keepCore clears every core feature vkattn does not use (robustBufferAccess costs speed), so the
// queried chain can be passed to vkCreateDevice as the set of features to enable.
func (c *featureChain) keepCore() {
	core := c.core()
	old := *core
	*core = C.vkattn_physical_device_features{
		shaderFloat64:         old.shaderFloat64,
		shaderInt64:           old.shaderInt64,
		shaderInt16:           old.shaderInt16,
		sparseBinding:         old.sparseBinding,
		sparseResidencyBuffer: old.sparseResidencyBuffer,
	}
}

func (in *Instance) describe(index int, h vk.PhysicalDevice) PhysicalInfo {
	var p vk.PhysicalDeviceProperties
	vk.GetPhysicalDeviceProperties(h, &p)
	p.Deref()
	p.Limits.Deref()
	p.SparseProperties.Deref()
	p.Free() // after every Deref, which read the binding's C copy that this frees
	l := p.Limits
	info := PhysicalInfo{
		Index:                     index,
		Name:                      vk.ToString(p.DeviceName[:]),
		VendorID:                  p.VendorID,
		DeviceID:                  p.DeviceID,
		Type:                      DeviceType(p.DeviceType),
		APIVersion:                p.ApiVersion,
		DriverVersion:             p.DriverVersion,
		PipelineCacheUUID:         p.PipelineCacheUUID,
		MaxSharedMemory:           l.MaxComputeSharedMemorySize,
		MaxWorkgroupInvocations:   l.MaxComputeWorkGroupInvocations,
		MaxWorkgroupSize:          l.MaxComputeWorkGroupSize,
		MaxWorkgroupCount:         l.MaxComputeWorkGroupCount,
		MaxStorageBufferRange:     l.MaxStorageBufferRange,
		MaxPushConstantsSize:      l.MaxPushConstantsSize,
		MinStorageBufferAlignment: uint64(l.MinStorageBufferOffsetAlignment),
		TimestampPeriod:           l.TimestampPeriod,
		SparseAddressSpaceSize:    uint64(l.SparseAddressSpaceSize),
		NonResidentStrict:         p.SparseProperties.ResidencyNonResidentStrict == vk.True,
		Extensions:                in.deviceExtensions(h),
		ComputeFamily:             -1,
	}
	dispatch := C.vkattn_dispatchable(unsafe.Pointer(h))

	props := &chain{}
	props.add(stProperties2, C.sizeof_vkattn_physical_device_properties2)
	sg := props.add(stSubgroupProps, C.sizeof_vkattn_subgroup_properties)
	m3 := props.add(stMaintenance3Props, C.sizeof_vkattn_maintenance3_properties)
	drv := -1
	if info.APIVersion >= vk.MakeVersion(1, 2, 0) {
		drv = props.add(stDriverProps, C.sizeof_vkattn_driver_properties)
	}
	sgs, idp := -1, -1
	if info.APIVersion >= vk.MakeVersion(1, 3, 0) {
		sgs = props.add(stSubgroupSizeProps, C.sizeof_vkattn_subgroup_size_control_properties)
		idp = props.add(stIntDotProps, C.sizeof_vkattn_integer_dot_product_properties)
	}
	cm2 := -1
	if info.Extensions[ExtCooperativeMatrix2] {
		cm2 = props.add(stCoopMat2Props, C.sizeof_vkattn_cooperative_matrix2_properties_nv)
	}
	C.vkattn_get_properties2(instanceProc(in.handle, "vkGetPhysicalDeviceProperties2"), dispatch, props.head())
	if cm2 >= 0 {
		p := link[C.vkattn_cooperative_matrix2_properties_nv](props, cm2)
		info.CoopMat2 = CoopMat2Limits{MaxWorkgroupSize: uint32(p.cooperativeMatrixWorkgroupScopeMaxWorkgroupSize),
			MaxDimension:         uint32(p.cooperativeMatrixFlexibleDimensionsMaxDimension),
			ReservedSharedMemory: uint32(p.cooperativeMatrixWorkgroupScopeReservedSharedMemory)}
	}
	sgp := link[C.vkattn_subgroup_properties](props, sg)
	info.SubgroupSize = uint32(sgp.subgroupSize)
	info.SubgroupComputeStage = sgp.supportedStages&shaderStageCompute != 0
	info.SubgroupOps = uint32(sgp.supportedOperations)
	info.MaxMemoryAllocationSize = uint64(link[C.vkattn_maintenance3_properties](props, m3).maxMemoryAllocationSize)
	info.MinSubgroupSize, info.MaxSubgroupSize = info.SubgroupSize, info.SubgroupSize
	if drv >= 0 {
		d := link[C.vkattn_driver_properties](props, drv)
		info.DriverName = cstring(d.driverName[:])
		info.DriverInfo = cstring(d.driverInfo[:])
	}
	if sgs >= 0 {
		p := link[C.vkattn_subgroup_size_control_properties](props, sgs)
		info.MinSubgroupSize, info.MaxSubgroupSize = uint32(p.minSubgroupSize), uint32(p.maxSubgroupSize)
	}
	if idp >= 0 {
		info.IntDot4x8PackedAccelerated = cbool(link[C.vkattn_integer_dot_product_properties](props, idp).integerDotProduct4x8BitPackedSignedAccelerated)
	}
	props.free()

	fc := newFeatureChain(info.APIVersion, info.Extensions)
	getFeatures(in, h, fc)
	info.Features = fc.features()
	fc.free()

	if info.Features.CooperativeMatrix {
		info.CoopMatShapes = in.coopMatShapes(dispatch)
	}
	if info.Features.CooperativeMatrix2 {
		info.CoopMatFlexible = in.coopMatFlexible(dispatch)
	}
	info.Heaps = in.heaps(h, dispatch, info.Extensions[ExtMemoryBudget])

	for i, q := range in.queueFamilies(h) {
		if vk.QueueFlagBits(q.queueFlags)&vk.QueueComputeBit != 0 {
			info.ComputeFamily = i
			info.TimestampBits = uint32(q.timestampValidBits)
			break
		}
	}
	return info
}

func (in *Instance) coopMatShapes(dispatch C.vkattn_dispatchable) []CoopMatShape {
	fn := "vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR"
	f := instanceProc(in.handle, fn)
	if f == nil {
		return nil
	}
	props, err := enumerate(fn, stCoopMatProps, func(n *C.uint32_t, p *C.vkattn_cooperative_matrix_properties_khr) C.int32_t {
		return C.vkattn_coopmat_properties(f, dispatch, n, p)
	})
	if err != nil {
		return nil
	}
	shapes := make([]CoopMatShape, len(props))
	for i, p := range props {
		shapes[i] = CoopMatShape{M: uint32(p.MSize), N: uint32(p.NSize), K: uint32(p.KSize),
			A: ComponentType(p.AType), B: ComponentType(p.BType), C: ComponentType(p.CType),
			Result: ComponentType(p.ResultType), Saturating: cbool(p.saturatingAccumulation),
			SubgroupScope: p.scope == scopeSubgroup}
	}
	return shapes
}

func (in *Instance) coopMatFlexible(dispatch C.vkattn_dispatchable) []CoopMatFlexible {
	fn := "vkGetPhysicalDeviceCooperativeMatrixFlexibleDimensionsPropertiesNV"
	f := instanceProc(in.handle, fn)
	if f == nil {
		return nil
	}
	props, err := enumerate(fn, stCoopMatFlexibleProps, func(n *C.uint32_t, p *C.vkattn_cooperative_matrix_flexible_dimensions_properties_nv) C.int32_t {
		return C.vkattn_coopmat_flexible_properties(f, dispatch, n, p)
	})
	if err != nil {
		return nil
	}
	out := make([]CoopMatFlexible, len(props))
	for i, p := range props {
		out[i] = CoopMatFlexible{M: uint32(p.MGranularity), N: uint32(p.NGranularity), K: uint32(p.KGranularity),
			A: ComponentType(p.AType), B: ComponentType(p.BType), C: ComponentType(p.CType),
			Result: ComponentType(p.ResultType), Saturating: cbool(p.saturatingAccumulation),
			WorkgroupScope: p.scope == scopeWorkgroup, WorkgroupInvocations: uint32(p.workgroupInvocations)}
	}
	return out
}

func (in *Instance) heaps(h vk.PhysicalDevice, dispatch C.vkattn_dispatchable, budget bool) []MemoryHeap {
	var mp vk.PhysicalDeviceMemoryProperties
	vk.GetPhysicalDeviceMemoryProperties(h, &mp)
	mp.Deref()
	heaps := make([]MemoryHeap, mp.MemoryHeapCount)
	for i := range heaps {
		mp.MemoryHeaps[i].Deref()
		heaps[i] = MemoryHeap{Size: uint64(mp.MemoryHeaps[i].Size),
			DeviceLocal: vk.MemoryHeapFlagBits(mp.MemoryHeaps[i].Flags)&vk.MemoryHeapDeviceLocalBit != 0}
	}
	mp.Free()
	if budget {
		c := &chain{}
		c.add(stMemoryProperties2, C.sizeof_vkattn_physical_device_memory_properties2)
		b := c.add(stMemoryBudgetProps, C.sizeof_vkattn_memory_budget_properties)
		C.vkattn_get_memory_properties2(instanceProc(in.handle, "vkGetPhysicalDeviceMemoryProperties2"), dispatch, c.head())
		mb := link[C.vkattn_memory_budget_properties](c, b)
		for i := range heaps {
			heaps[i].Budget = uint64(mb.heapBudget[i])
			heaps[i].Usage = uint64(mb.heapUsage[i])
		}
		c.free()
	}
	return heaps
}

// getFeatures fills a feature chain for a physical device.
func getFeatures(in *Instance, h vk.PhysicalDevice, fc *featureChain) {
	C.vkattn_get_features2(instanceProc(in.handle, "vkGetPhysicalDeviceFeatures2"),
		C.vkattn_dispatchable(unsafe.Pointer(h)), fc.head())
}
