// Package devices discovers Vulkan devices, describes each as a Profile (the limits and features
// kernels are chosen and sized by) and picks the default device.
package devices

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/vkattn/vkattn/vk"
)

// Tier is a family of kernels by the hardware features it needs, slowest first.
type Tier int

// Tiers. Every operation exists at TierScalar, so every device can run it. TierAuto, the zero
// value, asks for the fastest tier the device supports.
const (
	TierAuto     Tier = iota
	TierScalar        // Vulkan compute only
	TierSubgroup      // subgroup arithmetic and vote in compute shaders
	TierCoopMat       // VK_KHR_cooperative_matrix
	TierCoopMat2      // VK_NV_cooperative_matrix2
)

// Tiers lists all tiers, slowest first.
var Tiers = []Tier{TierScalar, TierSubgroup, TierCoopMat, TierCoopMat2}

func (t Tier) String() string {
	switch t {
	case TierAuto:
		return "auto"
	case TierScalar:
		return "scalar"
	case TierSubgroup:
		return "subgroup"
	case TierCoopMat:
		return "coopmat"
	case TierCoopMat2:
		return "coopmat2"
	}
	return fmt.Sprintf("tier(%d)", int(t))
}

// ParseTier parses a tier name ("auto" or one of Tiers).
func ParseTier(s string) (Tier, error) {
	for _, t := range append([]Tier{TierAuto}, Tiers...) {
		if t.String() == s {
			return t, nil
		}
	}
	return 0, fmt.Errorf("devices: unknown tier %q (want auto, scalar, subgroup, coopmat or coopmat2)", s)
}

// Profile is what kernels are chosen and sized by.
type Profile struct {
	vk.PhysicalInfo
	Vendor string
}

// NewProfile derives a profile from a device's properties.
func NewProfile(info vk.PhysicalInfo) Profile {
	return Profile{PhysicalInfo: info, Vendor: VendorName(info.VendorID)}
}

// VendorName names the PCI vendor.
func VendorName(id uint32) string {
	switch id {
	case 0x10de:
		return "NVIDIA"
	case 0x1002:
		return "AMD"
	case 0x8086:
		return "Intel"
	case 0x13b5:
		return "ARM"
	case 0x5143:
		return "Qualcomm"
	case 0x106b:
		return "Apple"
	case 0x10005:
		return "Mesa"
	}
	return fmt.Sprintf("0x%04x", id)
}

// Supports reports whether the device has what the tier's kernels need: the tier-level
// summary, every feature of TierRequires(t). A particular kernel variant runs only where the
// device also has everything it Requires (shaders.Variant.RunsOn).
func (p *Profile) Supports(t Tier) bool {
	fs := TierRequires(t)
	return fs != nil && p.HasAll(fs)
}

// CoopMatShape returns the first subgroup-scope shape with inputs of type a and fp32
// accumulation, or nil.
func (p *Profile) CoopMatShape(a vk.ComponentType) *vk.CoopMatShape {
	for i, s := range p.CoopMatShapes {
		if s.A == a && s.B == a && s.C == vk.ComponentF32 && s.Result == vk.ComponentF32 && s.SubgroupScope {
			return &p.CoopMatShapes[i]
		}
	}
	return nil
}

// CoopMatFlexibleFor returns the workgroup-scope flexible-size entry (VK_NV_cooperative_matrix2)
// for inputs of type a with fp32 accumulation in workgroups of the given invocations, or nil.
func (p *Profile) CoopMatFlexibleFor(a vk.ComponentType, invocations uint32) *vk.CoopMatFlexible {
	for i, f := range p.CoopMatFlexible {
		if f.A == a && f.B == a && f.C == vk.ComponentF32 && f.Result == vk.ComponentF32 && f.WorkgroupScope &&
			f.WorkgroupInvocations == invocations {
			return &p.CoopMatFlexible[i]
		}
	}
	return nil
}

// HasCoopMatShape reports whether the device offers the subgroup-scope m x n x k shape with inputs
// of type a and fp32 accumulation (which does not saturate).
func (p *Profile) HasCoopMatShape(a vk.ComponentType, m, n, k uint32) bool {
	return p.HasCoopMatShapeOf(a, vk.ComponentF32, m, n, k)
}

// HasCoopMatShapeOf reports whether the device offers the subgroup-scope m x n x k shape with
// inputs of type a and accumulation (C and result) of type acc without saturating accumulation,
// which every multiply-add would otherwise have to ask for (integer shapes).
func (p *Profile) HasCoopMatShapeOf(a, acc vk.ComponentType, m, n, k uint32) bool {
	for _, s := range p.CoopMatShapes {
		if s.A == a && s.B == a && s.C == acc && s.Result == acc && s.SubgroupScope && !s.Saturating &&
			s.M == m && s.N == n && s.K == k {
			return true
		}
	}
	return false
}

// DeviceLocalBytes is the size of the largest device-local heap.
func (p *Profile) DeviceLocalBytes() uint64 {
	var n uint64
	for _, h := range p.Heaps {
		if h.DeviceLocal && h.Size > n {
			n = h.Size
		}
	}
	return n
}

// Summary is a one-line description.
func (p *Profile) Summary() string {
	return fmt.Sprintf("%s (%s %s, Vulkan %s, %s)", p.Name, p.Vendor, p.Type, vk.Version(p.APIVersion), p.DriverName)
}

// DeviceEnv overrides device selection by index or by a case-insensitive name substring.
const DeviceEnv = "VKATTN_DEVICE"

// Select returns the index into profiles of the device to use: want (an index or a name
// substring) if not empty, else $VKATTN_DEVICE if set, else the first discrete GPU, then
// integrated, then virtual, then CPU.
func Select(profiles []Profile, want string) (int, error) {
	if len(profiles) == 0 {
		return -1, fmt.Errorf("devices: %w", vk.ErrNoDevice)
	}
	if want = strings.TrimSpace(want); want == "" {
		want = strings.TrimSpace(os.Getenv(DeviceEnv))
	}
	if want != "" {
		return match(profiles, want)
	}
	rank := map[vk.DeviceType]int{vk.DeviceDiscrete: 0, vk.DeviceIntegrated: 1, vk.DeviceVirtual: 2, vk.DeviceCPU: 3, vk.DeviceOther: 4}
	idx := make([]int, len(profiles))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return rank[profiles[idx[a]].Type] < rank[profiles[idx[b]].Type] })
	for _, i := range idx {
		if profiles[i].Supports(TierScalar) {
			return i, nil
		}
	}
	return -1, fmt.Errorf("devices: no device has a compute queue: %w", vk.ErrNoDevice)
}

func match(profiles []Profile, want string) (int, error) {
	if i, err := strconv.Atoi(want); err == nil {
		if i < 0 || i >= len(profiles) {
			return -1, fmt.Errorf("devices: device %d requested but there are %d devices: %w", i, len(profiles), vk.ErrNoDevice)
		}
		return i, nil
	}
	for i, p := range profiles {
		if strings.Contains(strings.ToLower(p.Name), strings.ToLower(want)) {
			return i, nil
		}
	}
	var names []string
	for _, p := range profiles {
		names = append(names, p.Name)
	}
	return -1, fmt.Errorf("devices: device %q matches none of %q: %w", want, names, vk.ErrNoDevice)
}

// List returns the profiles of the instance's devices.
func List(in *vk.Instance) ([]Profile, error) {
	infos, err := in.PhysicalDevices()
	if err != nil {
		return nil, err
	}
	out := make([]Profile, len(infos))
	for i, info := range infos {
		out[i] = NewProfile(info)
	}
	return out, nil
}
