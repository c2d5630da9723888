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
	stBFloat16Features       = 1000141000
	stRequiredSubgroupSizeCI = 1000225001
	stMaintenance4Features   = 1000413000
	stMemoryModelFeatures    = 1000211000
)

// Extensions vkattn enables when a device has them.
const (
	ExtCooperativeMatrix  = "VK_KHR_cooperative_matrix"
	ExtCooperativeMatrix2 = "VK_NV_cooperative_matrix2"
	ExtShaderBFloat16     = "VK_KHR_shader_bfloat16"
	ExtMemoryBudget       = "VK_EXT_memory_budget"
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
	SubgroupSize               uint32
	MinSubgroupSize            uint32
	MaxSubgroupSize            uint32
	SubgroupOps                uint32 // VkSubgroupFeatureFlags
	SubgroupComputeStage       bool
	IntDot4x8PackedAccelerated bool
	Features                   Features
	Extensions                 map[string]bool
	CoopMatShapes              []CoopMatShape
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

func deviceExtensions(h vk.PhysicalDevice) map[string]bool {
	var n uint32
	vk.EnumerateDeviceExtensionProperties(h, "", &n, nil)
	props := make([]vk.ExtensionProperties, n)
	vk.EnumerateDeviceExtensionProperties(h, "", &n, props)
	m := make(map[string]bool, n)
	for i := range props[:n] {
		props[i].Deref()
		m[vk.ToString(props[i].ExtensionName[:])] = true
	}
	return m
}

// featureChain is the VkPhysicalDeviceFeatures2 chain vkattn queries and enables, indices of
// its links, and which links a device of this API version and extension set may carry.
type featureChain struct {
	chain
	f16i8, s16, s8, sgsize, intdot, timeline, maint4, memmodel, coopmat, coopmat2, bf16 int
}

const (
	coreShaderFloat64 = 39
	coreShaderInt64   = 40
	coreShaderInt16   = 41
	coreSparseBinding = 44
	coreSparseResBuf  = 45
)

func newFeatureChain(api uint32, exts map[string]bool) *featureChain {
	c := &featureChain{f16i8: -1, s16: -1, s8: -1, sgsize: -1, intdot: -1, timeline: -1, maint4: -1, memmodel: -1, coopmat: -1, coopmat2: -1, bf16: -1}
	c.add(stFeatures2, 16+55*4)
	v11, v12, v13 := api >= vk.MakeVersion(1, 1, 0), api >= vk.MakeVersion(1, 2, 0), api >= vk.MakeVersion(1, 3, 0)
	if v11 {
		c.s16 = c.add(st16BitStorageFeatures, 32)
	}
	if v12 {
		c.f16i8 = c.add(stFloat16Int8Features, 24)
		c.s8 = c.add(st8BitStorageFeatures, 32)
		c.timeline = c.add(stTimelineFeatures, 24)
		c.memmodel = c.add(stMemoryModelFeatures, 32)
	}
	if v13 {
		c.sgsize = c.add(stSubgroupSizeFeatures, 24)
		c.intdot = c.add(stIntDotFeatures, 24)
		c.maint4 = c.add(stMaintenance4Features, 24)
	}
	if exts[ExtCooperativeMatrix] {
		c.coopmat = c.add(stCoopMatFeatures, 24)
	}
	if exts[ExtCooperativeMatrix2] {
		c.coopmat2 = c.add(stCoopMat2Features, 16+7*4)
	}
	if exts[ExtShaderBFloat16] {
		c.bf16 = c.add(stBFloat16Features, 32)
	}
	return c
}

func (c *featureChain) flag(link, field int) bool { return link >= 0 && c.u32(link, 16+4*field) != 0 }

func (c *featureChain) features() Features {
	return Features{
		ShaderFloat64:             c.flag(0, coreShaderFloat64),
		ShaderInt64:               c.flag(0, coreShaderInt64),
		ShaderInt16:               c.flag(0, coreShaderInt16),
		SparseBinding:             c.flag(0, coreSparseBinding),
		SparseResidencyBuffer:     c.flag(0, coreSparseResBuf),
		StorageBuffer16Bit:        c.flag(c.s16, 0),
		ShaderFloat16:             c.flag(c.f16i8, 0),
		ShaderInt8:                c.flag(c.f16i8, 1),
		StorageBuffer8Bit:         c.flag(c.s8, 0),
		TimelineSemaphore:         c.flag(c.timeline, 0),
		Maintenance4:              c.flag(c.maint4, 0),
		VulkanMemoryModel:         c.flag(c.memmodel, 0),
		SubgroupSizeControl:       c.flag(c.sgsize, 0),
		ComputeFullSubgroups:      c.flag(c.sgsize, 1),
		IntegerDotProduct:         c.flag(c.intdot, 0),
		CooperativeMatrix:         c.flag(c.coopmat, 0),
		CooperativeMatrix2:        c.flag(c.coopmat2, 0),
		BFloat16:                  c.flag(c.bf16, 0),
		BFloat16CooperativeMatrix: c.flag(c.bf16, 2),
	}
}

// keepCore clears every core feature vkattn does not use (robustBufferAccess costs speed), so the
// queried chain can be passed to vkCreateDevice as the set of features to enable.
func (c *featureChain) keepCore() {
	keep := map[int]bool{coreShaderFloat64: true, coreShaderInt64: true, coreShaderInt16: true,
		coreSparseBinding: true, coreSparseResBuf: true}
	for f := 0; f < 55; f++ {
		if !keep[f] {
			c.setU32(0, 16+4*f, 0)
		}
	}
}

func (in *Instance) describe(index int, h vk.PhysicalDevice) PhysicalInfo {
	var p vk.PhysicalDeviceProperties
	vk.GetPhysicalDeviceProperties(h, &p)
	p.Deref()
	p.Limits.Deref()
	p.SparseProperties.Deref()
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
		Extensions:                deviceExtensions(h),
		ComputeFamily:             -1,
	}
	dispatch := C.vkattn_dispatchable(unsafe.Pointer(h))

	props := &chain{}
	props.add(stProperties2, 16+824) // VkPhysicalDeviceProperties is 824 bytes
	sg := props.add(stSubgroupProps, 32)
	m3 := props.add(stMaintenance3Props, 32)
	drv := -1
	if info.APIVersion >= vk.MakeVersion(1, 2, 0) {
		drv = props.add(stDriverProps, 16+4+256+256+4)
	}
	sgs, idp := -1, -1
	if info.APIVersion >= vk.MakeVersion(1, 3, 0) {
		sgs = props.add(stSubgroupSizeProps, 32)
		idp = props.add(stIntDotProps, 16+30*4)
	}
	C.vkattn_get_properties2(instanceProc(in.handle, "vkGetPhysicalDeviceProperties2"), dispatch, props.head())
	info.SubgroupSize = props.u32(sg, 16)
	info.SubgroupComputeStage = props.u32(sg, 20)&0x20 != 0
	info.SubgroupOps = props.u32(sg, 24)
	info.MaxMemoryAllocationSize = props.u64(m3, 24)
	info.MinSubgroupSize, info.MaxSubgroupSize = info.SubgroupSize, info.SubgroupSize
	if drv >= 0 {
		info.DriverName = props.str(drv, 20, 256)
		info.DriverInfo = props.str(drv, 276, 256)
	}
	if sgs >= 0 {
		info.MinSubgroupSize, info.MaxSubgroupSize = props.u32(sgs, 16), props.u32(sgs, 20)
	}
	if idp >= 0 {
		info.IntDot4x8PackedAccelerated = props.u32(idp, 16+4*4) != 0
	}
	props.free()

	fc := newFeatureChain(info.APIVersion, info.Extensions)
	getFeatures(in, h, fc)
	info.Features = fc.features()
	fc.free()

	if info.Features.CooperativeMatrix {
		info.CoopMatShapes = in.coopMatShapes(dispatch)
	}
	info.Heaps = in.heaps(h, dispatch, info.Extensions[ExtMemoryBudget])

	var nq uint32
	vk.GetPhysicalDeviceQueueFamilyProperties(h, &nq, nil)
	qs := make([]vk.QueueFamilyProperties, nq)
	vk.GetPhysicalDeviceQueueFamilyProperties(h, &nq, qs)
	for i := range qs[:nq] {
		qs[i].Deref()
		if vk.QueueFlagBits(qs[i].QueueFlags)&vk.QueueComputeBit != 0 {
			info.ComputeFamily = i
			info.TimestampBits = qs[i].TimestampValidBits
			break
		}
	}
	return info
}

func (in *Instance) coopMatShapes(dispatch C.vkattn_dispatchable) []CoopMatShape {
	f := instanceProc(in.handle, "vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR")
	if f == nil {
		return nil
	}
	var n C.uint32_t
	if C.vkattn_coopmat_properties(f, dispatch, &n, nil) != 0 || n == 0 {
		return nil
	}
	const size = 56 // sType, pNext, 7 x uint32, VkBool32, VkScopeKHR, padded to 8
	mem := C.calloc(C.size_t(n), size)
	defer C.free(mem)
	for i := 0; i < int(n); i++ {
		*(*uint32)(unsafe.Add(mem, i*size)) = stCoopMatProps
	}
	if C.vkattn_coopmat_properties(f, dispatch, &n, mem) != 0 {
		return nil
	}
	shapes := make([]CoopMatShape, n)
	for i := range shapes {
		u := unsafe.Slice((*uint32)(unsafe.Add(mem, i*size+16)), 9)
		shapes[i] = CoopMatShape{M: u[0], N: u[1], K: u[2], A: ComponentType(u[3]), B: ComponentType(u[4]),
			C: ComponentType(u[5]), Result: ComponentType(u[6]), Saturating: u[7] != 0, SubgroupScope: u[8] == 3}
	}
	return shapes
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
	if budget {
		c := &chain{}
		c.add(stMemoryProperties2, 16+520) // VkPhysicalDeviceMemoryProperties is 520 bytes
		b := c.add(stMemoryBudgetProps, 16+2*16*8)
		C.vkattn_get_memory_properties2(instanceProc(in.handle, "vkGetPhysicalDeviceMemoryProperties2"), dispatch, c.head())
		for i := range heaps {
			heaps[i].Budget = c.u64(b, 16+8*i)
			heaps[i].Usage = c.u64(b, 16+128+8*i)
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
