// Package shaders holds the GLSL sources of vkattn's kernels (glsl/), their SPIR-V compiled by
// `make shaders` and embedded (spv/), and the registry of kernel variants: which operation each
// implements, at which tier, with which bindings and push constants.
package shaders

import (
	"embed"
	"fmt"
	"slices"

	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/memory"
)

//go:embed spv
var spv embed.FS

// Op is an operation kernels implement.
type Op string

// Operations.
const (
	OpForward      Op = "forward"       // FlashAttention forward
	OpNaiveScores  Op = "naive-scores"  // naive baseline: S = mask(scale Q K^T)
	OpNaiveSoftmax Op = "naive-softmax" // naive baseline: P = softmax(S) in place, logsumexp
	OpNaivePV      Op = "naive-pv"      // naive baseline: O = P V
)

// Variant is one compiled kernel.
type Variant struct {
	Name     string // also the SPIR-V file's base name
	Op       Op
	Tier     devices.Tier
	Bindings int
	PushSize uint32 // bytes
	// Source and Defines say how `make shaders` builds it (documentation and the build list).
	Source  string
	Defines []string
	// Env is the Vulkan environment it is compiled for; empty means vulkan1.2, which every tier
	// below cooperative matrices needs at most (workgroup sizes from specialization constants
	// then use the WorkgroupSize built-in, not LocalSizeId, so maintenance4 is not needed).
	Env string
	// Inputs lists the storage types of q, k and v the variant reads; nil means every type.
	Inputs []memory.DType
}

// Reads reports whether the variant takes inputs stored as dt.
func (v *Variant) Reads(dt memory.DType) bool {
	return v.Inputs == nil || slices.Contains(v.Inputs, dt)
}

// TargetEnv is the glslang/spirv-val target environment of the variant.
func (v *Variant) TargetEnv() string {
	if v.Env == "" {
		return "vulkan1.2"
	}
	return v.Env
}

// PushWords is the number of 32-bit push constants of the attention kernels (glsl/params.glsl).
const PushWords = 20

// Variants lists every kernel, in the order the build tool compiles them.
var Variants = []Variant{
	{Name: "flash_fwd_scalar", Op: OpForward, Tier: devices.TierScalar, Bindings: 6, PushSize: 4 * PushWords,
		Source: "flash_fwd.comp", Defines: []string{"TIER_SCALAR"}},
	{Name: "flash_fwd_subgroup", Op: OpForward, Tier: devices.TierSubgroup, Bindings: 6, PushSize: 4 * PushWords,
		Source: "flash_fwd.comp", Defines: []string{"TIER_SUBGROUP"}},
	// fp16 only: fp32 inputs would lose precision in fp16 matrices, and bf16 matrices need a
	// newer shader compiler (GL_EXT_bfloat16).
	{Name: "flash_fwd_coopmat", Op: OpForward, Tier: devices.TierCoopMat, Bindings: 6, PushSize: 4 * PushWords,
		Source: "flash_fwd.comp", Defines: []string{"TIER_COOPMAT"}, Env: "vulkan1.3", Inputs: []memory.DType{memory.F16}},
	{Name: "naive_scores", Op: OpNaiveScores, Tier: devices.TierScalar, Bindings: 7, PushSize: 4 * PushWords,
		Source: "naive.comp", Defines: []string{"NAIVE_SCORES"}},
	{Name: "naive_softmax", Op: OpNaiveSoftmax, Tier: devices.TierScalar, Bindings: 7, PushSize: 4 * PushWords,
		Source: "naive.comp", Defines: []string{"NAIVE_SOFTMAX"}},
	{Name: "naive_pv", Op: OpNaivePV, Tier: devices.TierScalar, Bindings: 7, PushSize: 4 * PushWords,
		Source: "naive.comp", Defines: []string{"NAIVE_PV"}},
}

// SPIRV returns the variant's embedded SPIR-V.
func (v *Variant) SPIRV() ([]byte, error) {
	b, err := spv.ReadFile("spv/" + v.Name + ".spv")
	if err != nil {
		return nil, fmt.Errorf("shaders: %s: %w (run make shaders)", v.Name, err)
	}
	return b, nil
}

// Lookup finds a variant by name.
func Lookup(name string) (*Variant, error) {
	for i := range Variants {
		if Variants[i].Name == name {
			return &Variants[i], nil
		}
	}
	return nil, fmt.Errorf("shaders: no variant %q", name)
}

// Best returns the variant of op at the fastest tier the profile supports, no faster than max.
func Best(op Op, p *devices.Profile, max devices.Tier) (*Variant, error) {
	var best *Variant
	for i := range Variants {
		v := &Variants[i]
		if v.Op == op && v.Tier <= max && p.Supports(v.Tier) && (best == nil || v.Tier > best.Tier) {
			best = v
		}
	}
	if best == nil {
		return nil, fmt.Errorf("shaders: no %s kernel at tier %s or below runs on %s", op, max, p.Name)
	}
	return best, nil
}

// ForTier returns the variant of op at exactly the given tier.
func ForTier(op Op, tier devices.Tier) (*Variant, error) {
	for i := range Variants {
		if Variants[i].Op == op && Variants[i].Tier == tier {
			return &Variants[i], nil
		}
	}
	return nil, fmt.Errorf("shaders: no %s kernel at tier %s", op, tier)
}
