package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/vkattn/vkattn/attention"
	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/memory"
	"github.com/vkattn/vkattn/shaders"
	"github.com/vkattn/vkattn/vk"
)

func cmdDevices(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("devices", "Lists every Vulkan device with the capabilities kernels are chosen by, marks the default\n"+
		"one (*), and says which tier and kernel each operation gets on it.", stderr)
	asJSON := fs.Bool("json", false, "write JSON instead of a table")
	device := fs.String("device", "", "device to mark as the one commands use (default $"+devices.DeviceEnv+" or the automatic choice)")
	if err := parse(fs, args); err != nil {
		return err
	}
	inst, err := vk.NewInstance(vk.InstanceOptions{})
	if err != nil {
		return fmt.Errorf("%w\n(is a Vulkan loader and driver installed? Debian: apt-get install libvulkan1 mesa-vulkan-drivers)", err)
	}
	defer inst.Close()
	profiles, err := devices.List(inst)
	if err != nil {
		return err
	}
	def, selErr := devices.Select(profiles, *device)
	infos := describeDevices(profiles, def)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(infos)
	}
	if err := writeDevices(stdout, infos); err != nil {
		return err
	}
	if selErr != nil {
		return fmt.Errorf("no default device: %w", selErr)
	}
	return nil
}

// deviceInfo is one device as `vkattn devices` reports it.
type deviceInfo struct {
	Index         int               `json:"index"`
	Default       bool              `json:"default"`
	Name          string            `json:"name"`
	Vendor        string            `json:"vendor"`
	Type          string            `json:"type"`
	Driver        string            `json:"driver"`
	DriverInfo    string            `json:"driver_info"`
	Vulkan        string            `json:"vulkan"`
	Subgroup      uint32            `json:"subgroup_size"`
	SubgroupMin   uint32            `json:"subgroup_min"`
	SubgroupMax   uint32            `json:"subgroup_max"`
	SubgroupCtrl  bool              `json:"subgroup_size_control"`
	SharedMemory  uint32            `json:"shared_memory"`
	Workgroup     uint32            `json:"max_workgroup_invocations"`
	StorageRange  uint32            `json:"max_storage_buffer_range"`
	MaxAlloc      uint64            `json:"max_allocation"`
	FP16          bool              `json:"fp16"`
	BF16          bool              `json:"bf16"`
	Int8          bool              `json:"int8"`
	IntDot        bool              `json:"int_dot"`
	IntDotAccel   bool              `json:"int_dot_accelerated"`
	CoopMat       bool              `json:"coopmat"`
	CoopMatShapes []string          `json:"coopmat_shapes"`
	CoopMat2      bool              `json:"coopmat2"`
	Sparse        bool              `json:"sparse_residency_buffer"`
	DeviceLocal   uint64            `json:"device_local_heap"`
	Budget        uint64            `json:"device_local_budget"` // 0 when the driver does not say
	Tiers         []string          `json:"tiers"`               // tiers whose features the device has (devices.Profile.Supports); an op's own list says what runs
	Ops           map[string]opInfo `json:"ops"`
}

// opInfo is the kernel an operation gets on a device, or why none.
type opInfo struct {
	// Tier and Kernel are the fastest the automatic choice takes (for the forward, for some input
	// type and head dim: Auto says which).
	Tier   string `json:"tier,omitempty"`
	Kernel string `json:"kernel,omitempty"`
	// Tiers lists every tier the op can be forced to on the device: for the forward, where
	// Forward accepts the tier for at least one input type and head dim.
	Tiers []string `json:"tiers,omitempty"`
	// Inputs (forward) gives the input types each tier of Tiers takes on the device; HeadDims the
	// head dims it runs for some input type, for tiers that do not run every one of
	// attention.HeadDims; InputHeadDims, by tier and input type, the head dims of the types that
	// run fewer than the tier does.
	Inputs        map[string][]string         `json:"inputs,omitempty"`
	HeadDims      map[string][]int            `json:"head_dims,omitempty"`
	InputHeadDims map[string]map[string][]int `json:"input_head_dims,omitempty"`
	// Auto (forward) is the automatic choice for each input type.
	Auto  []autoInfo `json:"auto,omitempty"`
	Error string     `json:"error,omitempty"`
}

// autoInfo is the forward kernel the automatic choice takes for one input type at the head dims
// HeadDims (empty: at every head dim of attention.HeadDims), or why none.
type autoInfo struct {
	DType    string `json:"dtype"`
	Tier     string `json:"tier,omitempty"`
	Kernel   string `json:"kernel,omitempty"`
	HeadDims []int  `json:"head_dims,omitempty"`
	Error    string `json:"error,omitempty"`
}

// ops lists the operations of the kernel registry in registry order.
func ops() []shaders.Op {
	var out []shaders.Op
	for _, v := range shaders.Variants {
		if !containsOp(out, v.Op) {
			out = append(out, v.Op)
		}
	}
	return out
}

func containsOp(ops []shaders.Op, op shaders.Op) bool {
	for _, o := range ops {
		if o == op {
			return true
		}
	}
	return false
}

func describeDevices(profiles []devices.Profile, def int) []deviceInfo {
	out := make([]deviceInfo, len(profiles))
	for i := range profiles {
		p := &profiles[i]
		d := deviceInfo{Index: i, Default: i == def, Name: p.Name, Vendor: p.Vendor, Type: p.Type.String(),
			Driver: p.DriverName, DriverInfo: p.DriverInfo, Vulkan: vk.Version(p.APIVersion),
			Subgroup: p.SubgroupSize, SubgroupMin: p.MinSubgroupSize, SubgroupMax: p.MaxSubgroupSize,
			SubgroupCtrl: p.Features.SubgroupSizeControl, SharedMemory: p.MaxSharedMemory,
			Workgroup: p.MaxWorkgroupInvocations, StorageRange: p.MaxStorageBufferRange, MaxAlloc: p.MaxMemoryAllocationSize,
			FP16: p.Features.ShaderFloat16 && p.Features.StorageBuffer16Bit, BF16: p.Features.BFloat16,
			Int8: p.Features.ShaderInt8, IntDot: p.Features.IntegerDotProduct, IntDotAccel: p.IntDot4x8PackedAccelerated,
			CoopMat: p.Features.CooperativeMatrix, CoopMat2: p.Features.CooperativeMatrix2,
			Sparse: p.Features.SparseResidencyBuffer, DeviceLocal: p.DeviceLocalBytes(), Ops: map[string]opInfo{}}
		d.CoopMatShapes = []string{}
		for _, s := range p.CoopMatShapes {
			scope := ""
			if !s.SubgroupScope {
				scope = " (not subgroup scope)"
			}
			d.CoopMatShapes = append(d.CoopMatShapes, fmt.Sprintf("%dx%dx%d %s*%s+%s->%s%s", s.M, s.N, s.K, s.A, s.B, s.C, s.Result, scope))
		}
		var best uint64
		for _, h := range p.Heaps {
			if h.DeviceLocal && h.Size >= best {
				best, d.Budget = h.Size, h.Budget
			}
		}
		for _, t := range devices.Tiers {
			if p.Supports(t) {
				d.Tiers = append(d.Tiers, t.String())
			}
		}
		for _, op := range ops() {
			if op == shaders.OpForward {
				d.Ops[string(op)] = forwardInfo(p)
				continue
			}
			if attention.IsDecodeOp(op) {
				d.Ops[string(op)] = decodeInfo(p, op)
			} else {
				d.Ops[string(op)] = kernelInfo(p, op)
			}
		}
		out[i] = d
	}
	return out
}

// kernelInfo is where op runs on the device by its kernels' features: the tiers it can be forced
// to and the fastest.
func kernelInfo(p *devices.Profile, op shaders.Op) opInfo {
	var info opInfo
	if v, err := shaders.Best(op, p, devices.TierCoopMat2); err != nil {
		info.Error = err.Error()
	} else {
		info.Tier, info.Kernel = v.Tier.String(), v.Name
	}
	for _, t := range devices.Tiers {
		if _, err := shaders.ForTierOn(op, t, p); err == nil && p.Supports(t) {
			info.Tiers = append(info.Tiers, t.String())
		}
	}
	return info
}

// decodeInfo is where decode operation op runs on the device: the tiers it can be forced to, and
// the automatic choice for one new token of fp16 queries at d = 128 and 4 query heads per kv
// head (more rows may take another tier, attention.AutoDecode).
func decodeInfo(p *devices.Profile, op shaders.Op) opInfo {
	var info opInfo
	for _, t := range attention.DecodeOpTiersOn(p, op) {
		info.Tiers = append(info.Tiers, t.String())
	}
	tier, kernel, err := attention.AutoDecode(p, op, memory.F16, 128, 4)
	if err != nil {
		info.Error = err.Error()
		return info
	}
	info.Tier, info.Kernel = tier.String(), kernel
	return info
}

// forwardInfo is what the attention package's Forward accepts on the device: the tiers it can be
// forced to, with their input types and head dims, and the automatic choice per input type.
func forwardInfo(p *devices.Profile) opInfo {
	info := opInfo{Inputs: map[string][]string{}}
	for _, s := range attention.ForwardSupport(p) {
		name := s.Tier.String()
		info.Tiers = append(info.Tiers, name)
		for _, dt := range s.Inputs {
			info.Inputs[name] = append(info.Inputs[name], dt.String())
		}
		if !slices.Equal(s.HeadDims, attention.HeadDims) {
			if info.HeadDims == nil {
				info.HeadDims = map[string][]int{}
			}
			info.HeadDims[name] = s.HeadDims
		}
		for _, dt := range s.Inputs {
			if hd := s.InputHeadDims[dt]; !slices.Equal(hd, s.HeadDims) {
				if info.InputHeadDims == nil {
					info.InputHeadDims = map[string]map[string][]int{}
				}
				if info.InputHeadDims[name] == nil {
					info.InputHeadDims[name] = map[string][]int{}
				}
				info.InputHeadDims[name][dt.String()] = hd
			}
		}
	}
	best := devices.TierAuto
	for _, dt := range attention.ForwardDTypes {
		var group []autoInfo // one per distinct outcome, in head dim order of first appearance
		for _, hd := range attention.HeadDims {
			a := autoInfo{DType: dt.String()}
			tier, kernel, err := attention.AutoForward(p, dt, hd)
			if err != nil {
				a.Error = err.Error()
			} else {
				a.Tier, a.Kernel = tier.String(), kernel
				if tier > best {
					best, info.Tier, info.Kernel = tier, tier.String(), kernel
				}
			}
			j := slices.IndexFunc(group, func(g autoInfo) bool { return g.Tier == a.Tier && g.Kernel == a.Kernel })
			if j < 0 {
				group, j = append(group, a), len(group)
			}
			group[j].HeadDims = append(group[j].HeadDims, hd)
		}
		if len(group) == 1 {
			group[0].HeadDims = nil
		}
		info.Auto = append(info.Auto, group...)
	}
	if best == devices.TierAuto {
		info.Error = fmt.Sprintf("no forward kernel runs on %s", p.Name)
		if len(info.Auto) > 0 && info.Auto[0].Error != "" {
			info.Error = info.Auto[0].Error
		}
	}
	return info
}

// headDims writes head dims for the table: "d 32, 64".
func headDims(ds []int) string {
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = fmt.Sprint(d)
	}
	return "d " + strings.Join(s, ", ")
}

// forwardLine is the table's line for the forward: the automatic choice per input type, fastest
// tier first, and the tiers it can be forced to with the input types (and head dims) each takes.
func forwardLine(info opInfo) string {
	type choice struct {
		tier, kernel string
		what         []string
	}
	var choices []choice
	for _, a := range info.Auto {
		if a.Error != "" {
			continue
		}
		what := a.DType
		if len(a.HeadDims) > 0 {
			what += " (" + headDims(a.HeadDims) + ")"
		}
		j := slices.IndexFunc(choices, func(c choice) bool { return c.tier == a.Tier && c.kernel == a.Kernel })
		if j < 0 {
			choices, j = append(choices, choice{tier: a.Tier, kernel: a.Kernel}), len(choices)
		}
		choices[j].what = append(choices[j].what, what)
	}
	slices.SortStableFunc(choices, func(a, b choice) int {
		ta, _ := devices.ParseTier(a.tier)
		tb, _ := devices.ParseTier(b.tier)
		return int(tb) - int(ta)
	})
	var auto, forced []string
	for _, c := range choices {
		auto = append(auto, fmt.Sprintf("%s (%s) for %s", c.tier, c.kernel, strings.Join(c.what, ", ")))
	}
	for _, t := range info.Tiers {
		var types []string
		for _, dt := range info.Inputs[t] {
			if hd, ok := info.InputHeadDims[t][dt]; ok {
				dt += " (" + headDims(hd) + ")"
			}
			types = append(types, dt)
		}
		in := strings.Join(types, ", ")
		if hd, ok := info.HeadDims[t]; ok {
			in += "; " + headDims(hd)
		}
		forced = append(forced, fmt.Sprintf("%s (%s)", t, in))
	}
	return fmt.Sprintf("%s; can be forced to: %s", strings.Join(auto, "; "), orNone(forced))
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "-"
}

func writeDevices(w io.Writer, infos []deviceInfo) error {
	if len(infos) == 0 {
		_, err := fmt.Fprintln(w, "no Vulkan devices (install a driver; mesa-vulkan-drivers gives lavapipe on any machine)")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\t#\tname\ttype\tdriver\tvulkan\tsubgroup\tshared\tsbo range\tfp16\tbf16\tint8\tint dot\tcoopmat\tcoopmat2\tsparse\tdevice heap\tbudget")
	for _, d := range infos {
		mark := ""
		if d.Default {
			mark = "*"
		}
		sg := fmt.Sprint(d.Subgroup)
		if d.SubgroupMin != d.SubgroupMax {
			sg = fmt.Sprintf("%d (%d-%d)", d.Subgroup, d.SubgroupMin, d.SubgroupMax)
		}
		dot := yesNo(d.IntDot)
		if d.IntDotAccel {
			dot = "accel"
		}
		coop := "-"
		if d.CoopMat {
			coop = fmt.Sprintf("%d shapes", len(d.CoopMatShapes))
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", mark, d.Index, d.Name, d.Type,
			d.Driver, d.Vulkan, sg, bytesString(uint64(d.SharedMemory)), bytesString(uint64(d.StorageRange)),
			yesNo(d.FP16), yesNo(d.BF16), yesNo(d.Int8), dot, coop, yesNo(d.CoopMat2), yesNo(d.Sparse),
			bytesString(d.DeviceLocal), bytesString(d.Budget))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	for _, d := range infos {
		mark := ""
		if d.Default {
			mark = " (default)"
		}
		fmt.Fprintf(w, "device %d%s: %s, %s; tiers its features reach: %s\n", d.Index, mark, d.Name, d.DriverInfo, orNone(d.Tiers))
		for _, op := range ops() {
			info := d.Ops[string(op)]
			if info.Error != "" {
				fmt.Fprintf(w, "  %-14s none: %s\n", op, info.Error)
				continue
			}
			if op == shaders.OpForward {
				fmt.Fprintf(w, "  %-14s %s\n", op, forwardLine(info))
				continue
			}
			fmt.Fprintf(w, "  %-14s %s (%s); can be forced to: %s\n", op, info.Tier, info.Kernel, orNone(info.Tiers))
		}
	}
	if t := os.Getenv(attention.TierEnv); t != "" {
		fmt.Fprintf(w, "\n$%s=%s forces that tier wherever a command leaves the tier automatic.\n", attention.TierEnv, t)
	}
	return nil
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
