package devices

import (
	"fmt"
	"sort"

	"github.com/vkattn/vkattn/vk"
)

// Simulated returns a profile of a device that is not present, for testing tier and tile
// selection: "nvidia-h100", "amd-rdna3" (subgroups of 64, or 32 through size control),
// "intel-arc" (subgroups of 16, 8 to 32), "small-16k" (16 KB of shared memory, subgroups of 16)
// and "lavapipe".
func Simulated(name string) (Profile, error) {
	base := vk.PhysicalInfo{
		Name: name, Type: vk.DeviceDiscrete, APIVersion: vk.APIVersion, ComputeFamily: 0, TimestampBits: 64,
		TimestampPeriod: 1, MaxWorkgroupInvocations: 1024, MaxWorkgroupSize: [3]uint32{1024, 1024, 64},
		MaxWorkgroupCount: [3]uint32{1 << 31, 65535, 65535}, MaxStorageBufferRange: 1<<32 - 1,
		MaxPushConstantsSize: 256, MaxMemoryAllocationSize: 1 << 32, SubgroupComputeStage: true,
		SubgroupOps: 0xff, Heaps: []vk.MemoryHeap{{Size: 16 << 30, DeviceLocal: true}},
		Features: vk.Features{ShaderFloat16: true, ShaderInt8: true, StorageBuffer16Bit: true, StorageBuffer8Bit: true,
			SubgroupSizeControl: true, ComputeFullSubgroups: true, IntegerDotProduct: true, TimelineSemaphore: true,
			Maintenance4: true, VulkanMemoryModel: true},
	}
	coop := func(a vk.ComponentType, m, n, k uint32) vk.CoopMatShape {
		return vk.CoopMatShape{M: m, N: n, K: k, A: a, B: a, C: vk.ComponentF32, Result: vk.ComponentF32, SubgroupScope: true}
	}
	p := base
	switch name {
	case "nvidia-h100":
		p.VendorID, p.Name, p.DriverName = 0x10de, "NVIDIA H100 80GB HBM3 (simulated)", "NVIDIA"
		p.SubgroupSize, p.MinSubgroupSize, p.MaxSubgroupSize = 32, 32, 32
		p.MaxSharedMemory = 48 << 10
		p.Features.CooperativeMatrix, p.Features.CooperativeMatrix2 = true, true
		p.Features.BFloat16, p.Features.BFloat16CooperativeMatrix = true, true
		p.CoopMatShapes = []vk.CoopMatShape{coop(vk.ComponentF16, 16, 16, 16), coop(vk.ComponentBF16, 16, 16, 16)}
		for _, n := range []uint32{16, 8} { // the driver's s8 shapes: 16x16x32 and 16x8x32, s32 accumulation
			p.CoopMatShapes = append(p.CoopMatShapes, vk.CoopMatShape{M: 16, N: n, K: 32, A: vk.ComponentS8, B: vk.ComponentS8,
				C: vk.ComponentS32, Result: vk.ComponentS32, SubgroupScope: true})
		}
		// The H100 driver's flexible sizes (580.159): granularity by workgroup size, fp16 and bf16.
		for _, a := range []vk.ComponentType{vk.ComponentF16, vk.ComponentBF16} {
			for _, g := range [][4]uint32{{32, 16, 16, 16}, {64, 16, 16, 16}, {128, 32, 16, 16}, {256, 32, 32, 16}} {
				p.CoopMatFlexible = append(p.CoopMatFlexible, vk.CoopMatFlexible{M: g[1], N: g[2], K: g[3], A: a, B: a,
					C: vk.ComponentF32, Result: vk.ComponentF32, WorkgroupScope: true, WorkgroupInvocations: g[0]})
			}
		}
		p.CoopMat2 = vk.CoopMat2Limits{MaxWorkgroupSize: 256, MaxDimension: 1024, ReservedSharedMemory: 8192}
		p.Heaps[0].Size = 80 << 30
	case "amd-rdna3":
		p.VendorID, p.Name, p.DriverName = 0x1002, "AMD Radeon RX 7900 XTX (simulated)", "radv"
		p.SubgroupSize, p.MinSubgroupSize, p.MaxSubgroupSize = 64, 32, 64
		p.MaxSharedMemory = 64 << 10
		p.Features.CooperativeMatrix = true
		p.CoopMatShapes = []vk.CoopMatShape{coop(vk.ComponentF16, 16, 16, 16)}
	case "intel-arc":
		p.VendorID, p.Name, p.DriverName = 0x8086, "Intel Arc A770 (simulated)", "Intel open-source Mesa driver"
		p.SubgroupSize, p.MinSubgroupSize, p.MaxSubgroupSize = 16, 8, 32
		p.MaxSharedMemory = 64 << 10
		p.Features.CooperativeMatrix = true
		p.CoopMatShapes = []vk.CoopMatShape{coop(vk.ComponentF16, 8, 8, 16)}
	case "small-16k":
		p.VendorID, p.Name, p.DriverName = 0x13b5, "Small GPU with 16 KB shared memory (simulated)", "small"
		p.Type = vk.DeviceIntegrated
		p.SubgroupSize, p.MinSubgroupSize, p.MaxSubgroupSize = 16, 16, 16
		p.MaxSharedMemory = 16 << 10
		p.MaxWorkgroupInvocations = 256
		p.MaxStorageBufferRange = 128 << 20
	case "lavapipe":
		p.VendorID, p.Name, p.DriverName = 0x10005, "llvmpipe (simulated)", "llvmpipe"
		p.Type = vk.DeviceCPU
		p.SubgroupSize, p.MinSubgroupSize, p.MaxSubgroupSize = 8, 8, 8
		p.MaxSharedMemory = 32 << 10
		p.MaxStorageBufferRange = 128 << 20
	default:
		return Profile{}, fmt.Errorf("devices: no simulated profile %q (have %v)", name, SimulatedNames())
	}
	return NewProfile(p), nil
}

// SimulatedNames lists the names Simulated knows.
func SimulatedNames() []string {
	n := []string{"nvidia-h100", "amd-rdna3", "intel-arc", "small-16k", "lavapipe"}
	sort.Strings(n)
	return n
}
