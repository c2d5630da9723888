// Package shaders holds the GLSL sources of vkattn's kernels (glsl/), their SPIR-V compiled by
// `make shaders` and embedded (spv/), and the registry of kernel variants: which operation each
// implements, at which tier, with which bindings and push constants.
package shaders

import (
	"embed"
	"fmt"
	"slices"
	"strings"

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
	OpDecode       Op = "decode"        // split-KV decode: partial outputs and logsumexps per key chunk
	OpMerge        Op = "merge"         // merge of partial outputs over disjoint key sets
	OpDecodeInt8   Op = "decode-int8"   // split-KV decode over K and V quantized as quant.Int8
	OpDecodeInt4   Op = "decode-int4"   // split-KV decode over K and V quantized as quant.Int4
	OpQuantize     Op = "quantize"      // quantizer of float tensors into package quant's formats
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
	// Requires lists the device features the kernel's code uses (read off its GLSL: extensions,
	// built-ins, storage types, the subgroup width its tiles assume). A variant runs only on a
	// device that has all of them (RunsOn); it requires at least what its Tier promises
	// (devices.TierRequires).
	Requires []devices.Feature
	// Inputs lists the storage types of q, k and v the variant reads; nil means every type.
	Inputs []memory.DType
	// Alternate marks a second kernel of its operation and tier, which the attention package
	// takes by name (Lookup) for the calls it fits: Best, ForTier, ForTierOn and ForInput pass it
	// over, so that the kernel they give for a tier and input type stays the one that takes
	// every call of that type.
	Alternate bool
}

// Reads reports whether the variant takes inputs stored as dt.
func (v *Variant) Reads(dt memory.DType) bool {
	return v.Inputs == nil || slices.Contains(v.Inputs, dt)
}

// Missing returns the features of v.Requires the device lacks; nil when it can run v.
func (v *Variant) Missing(p *devices.Profile) []devices.Feature { return p.Missing(v.Requires) }

// RunsOn returns nil if the device has every feature the variant requires, else an error naming
// the missing ones.
func (v *Variant) RunsOn(p *devices.Profile) error {
	if m := v.Missing(p); len(m) > 0 {
		return fmt.Errorf("shaders: %s does not run on %s: it needs %s", v.Name, p.Name, devices.FeatureList(m))
	}
	return nil
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

// QuantizePushWords is the number of 32-bit push constants of quantize.comp.
const QuantizePushWords = 8

// Feature sets of the current kernels. scalarNeeds: flash_fwd.comp at TIER_SCALAR and naive.comp
// use plain compute only (16-bit dtypes are unpacked from 32-bit words, io.glsl, so no 16-bit
// storage or arithmetic feature). subgroupNeeds: attend_subgroup.glsl uses gl_SubgroupID,
// gl_SubgroupInvocationID, subgroupBarrier (basic), subgroupMax and subgroupAdd (arithmetic) and
// subgroupAny (vote), and sizes its tiles for one subgroup width SG, which must be the device's
// fixed width or pinned through subgroup size control. coopMatNeeds: attend_coopmat.glsl adds
// cooperative matrices (with the Vulkan memory model glslang emits for them), 16-bit values in
// shared memory, subgroupShuffleXor, and LocalSizeId (Vulkan 1.3 environment). coopMat2Needs:
// flash_fwd_coopmat2.glsl adds workgroup-scope matrices of flexible size with reductions,
// conversions, per-element functions and tensor addressing (VK_NV_cooperative_matrix2) and 16-bit
// storage buffers. The bf16 variants of both (ELEM_BF16) add bf16 cooperative matrices
// (VK_KHR_shader_bfloat16).
var (
	scalarNeeds   = []devices.Feature{devices.FeatureCompute}
	subgroupNeeds = []devices.Feature{devices.FeatureCompute, devices.FeatureSubgroupBasic,
		devices.FeatureSubgroupArithmetic, devices.FeatureSubgroupVote, devices.FeatureSubgroupWidth}
	coopMatNeeds = append(slices.Clone(subgroupNeeds), devices.FeatureSubgroupShuffle, devices.FeatureFloat16,
		devices.FeatureCooperativeMatrix, devices.FeatureVulkanMemoryModel, devices.FeatureMaintenance4)
	coopMat2Needs     = append(slices.Clone(coopMatNeeds), devices.FeatureCooperativeMatrix2)
	coopMatBF16Needs  = append(slices.Clone(coopMatNeeds), devices.FeatureBFloat16Matrix)
	coopMat2BF16Needs = append(slices.Clone(coopMat2Needs), devices.FeatureBFloat16Matrix)
	// decodeSubgroupNeeds: decode_stream.glsl adds subgroupShuffleXor to what subgroupNeeds has.
	decodeSubgroupNeeds = append(slices.Clone(subgroupNeeds), devices.FeatureSubgroupShuffle)
	// immaNeeds: decode_imma.glsl takes from coopMatNeeds all but the fp16 arithmetic, and adds
	// int8 matrices, int8 arithmetic and int8 loads from K and V.
	immaNeeds = append(slices.DeleteFunc(slices.Clone(coopMatNeeds), func(f devices.Feature) bool { return f == devices.FeatureFloat16 }),
		devices.FeatureInt8Matrix)
)

// Variants lists every kernel, in the order the build tool compiles them.
var Variants = []Variant{
	{Name: "flash_fwd_scalar", Op: OpForward, Tier: devices.TierScalar, Bindings: 6, PushSize: 4 * PushWords,
		Source: "flash_fwd.comp", Defines: []string{"TIER_SCALAR"}, Requires: scalarNeeds},
	{Name: "flash_fwd_subgroup", Op: OpForward, Tier: devices.TierSubgroup, Bindings: 6, PushSize: 4 * PushWords,
		Source: "flash_fwd.comp", Defines: []string{"TIER_SUBGROUP"}, Requires: subgroupNeeds},
	// The matrix tiers have a kernel per matrix element type, fp16 and bf16, each taking inputs of
	// its type only: fp32 inputs would lose precision in 16-bit matrices.
	{Name: "flash_fwd_coopmat", Op: OpForward, Tier: devices.TierCoopMat, Bindings: 6, PushSize: 4 * PushWords,
		Source: "flash_fwd.comp", Defines: []string{"TIER_COOPMAT"}, Env: "vulkan1.3", Inputs: []memory.DType{memory.F16},
		Requires: coopMatNeeds},
	{Name: "flash_fwd_coopmat_bf16", Op: OpForward, Tier: devices.TierCoopMat, Bindings: 6, PushSize: 4 * PushWords,
		Source: "flash_fwd.comp", Defines: []string{"TIER_COOPMAT", "ELEM_BF16"}, Env: "vulkan1.3", Inputs: []memory.DType{memory.BF16},
		Requires: coopMatBF16Needs},
	{Name: "flash_fwd_coopmat2", Op: OpForward, Tier: devices.TierCoopMat2, Bindings: 6, PushSize: 4 * PushWords,
		Source: "flash_fwd.comp", Defines: []string{"TIER_COOPMAT2"}, Env: "vulkan1.3", Inputs: []memory.DType{memory.F16},
		Requires: coopMat2Needs},
	{Name: "flash_fwd_coopmat2_bf16", Op: OpForward, Tier: devices.TierCoopMat2, Bindings: 6, PushSize: 4 * PushWords,
		Source: "flash_fwd.comp", Defines: []string{"TIER_COOPMAT2", "ELEM_BF16"}, Env: "vulkan1.3", Inputs: []memory.DType{memory.BF16},
		Requires: coopMat2BF16Needs},
	{Name: "naive_scores", Op: OpNaiveScores, Tier: devices.TierScalar, Bindings: 7, PushSize: 4 * PushWords,
		Source: "naive.comp", Defines: []string{"NAIVE_SCORES"}, Requires: scalarNeeds},
	{Name: "naive_softmax", Op: OpNaiveSoftmax, Tier: devices.TierScalar, Bindings: 7, PushSize: 4 * PushWords,
		Source: "naive.comp", Defines: []string{"NAIVE_SOFTMAX"}, Requires: scalarNeeds},
	{Name: "naive_pv", Op: OpNaivePV, Tier: devices.TierScalar, Bindings: 7, PushSize: 4 * PushWords,
		Source: "naive.comp", Defines: []string{"NAIVE_PV"}, Requires: scalarNeeds},
	// decode.comp needs what flash_fwd.comp does at the same tier; merge.comp plain compute. Its
	// bindings: the attention kernels' six, the partials' two, and the arrivals of its merge
	// in the last workgroup (MERGE_LAST).
	{Name: "decode_scalar", Op: OpDecode, Tier: devices.TierScalar, Bindings: 9, PushSize: 4 * PushWords,
		Source: "decode.comp", Defines: []string{"TIER_SCALAR"}, Requires: scalarNeeds},
	{Name: "decode_subgroup", Op: OpDecode, Tier: devices.TierSubgroup, Bindings: 9, PushSize: 4 * PushWords,
		Source: "decode.comp", Defines: []string{"TIER_SUBGROUP"}, Requires: decodeSubgroupNeeds},
	// The matrix tier of decode.comp reads K and V as its matrices' type, as the forward's does.
	{Name: "decode_coopmat", Op: OpDecode, Tier: devices.TierCoopMat, Bindings: 9, PushSize: 4 * PushWords,
		Source: "decode.comp", Defines: []string{"TIER_COOPMAT"}, Env: "vulkan1.3", Inputs: []memory.DType{memory.F16},
		Requires: coopMatNeeds},
	{Name: "decode_coopmat_bf16", Op: OpDecode, Tier: devices.TierCoopMat, Bindings: 9, PushSize: 4 * PushWords,
		Source: "decode.comp", Defines: []string{"TIER_COOPMAT", "ELEM_BF16"}, Env: "vulkan1.3", Inputs: []memory.DType{memory.BF16},
		Requires: coopMatBF16Needs},
	// decode.comp over quantized K and V (quant.glsl): four more bindings before the arrivals, the
	// scales of K, V and FP8 queries and the queries' RoPE-aware scales.
	{Name: "decode_int8_scalar", Op: OpDecodeInt8, Tier: devices.TierScalar, Bindings: 13, PushSize: 4 * PushWords,
		Source: "decode.comp", Defines: []string{"TIER_SCALAR", "KV_INT8"}, Requires: scalarNeeds},
	{Name: "decode_int8_subgroup", Op: OpDecodeInt8, Tier: devices.TierSubgroup, Bindings: 13, PushSize: 4 * PushWords,
		Source: "decode.comp", Defines: []string{"TIER_SUBGROUP", "KV_INT8"}, Requires: decodeSubgroupNeeds},
	{Name: "decode_int4_scalar", Op: OpDecodeInt4, Tier: devices.TierScalar, Bindings: 13, PushSize: 4 * PushWords,
		Source: "decode.comp", Defines: []string{"TIER_SCALAR", "KV_INT4"}, Requires: scalarNeeds},
	{Name: "decode_int4_subgroup", Op: OpDecodeInt4, Tier: devices.TierSubgroup, Bindings: 13, PushSize: 4 * PushWords,
		Source: "decode.comp", Defines: []string{"TIER_SUBGROUP", "KV_INT4"}, Requires: decodeSubgroupNeeds},
	// The coopmat tier's quantized kernels stage the codes as fp16 matrix values and take fp16
	// queries (as the float kernel, q's type is the matrices').
	{Name: "decode_int8_coopmat", Op: OpDecodeInt8, Tier: devices.TierCoopMat, Bindings: 13, PushSize: 4 * PushWords,
		Source: "decode.comp", Defines: []string{"TIER_COOPMAT", "KV_INT8"}, Env: "vulkan1.3", Inputs: []memory.DType{memory.F16},
		Requires: coopMatNeeds},
	{Name: "decode_int4_coopmat", Op: OpDecodeInt4, Tier: devices.TierCoopMat, Bindings: 13, PushSize: 4 * PushWords,
		Source: "decode.comp", Defines: []string{"TIER_COOPMAT", "KV_INT4"}, Env: "vulkan1.3", Inputs: []memory.DType{memory.F16},
		Requires: coopMatNeeds},
	// INT8 and INT4 K/V on int8 matrices (decode_imma.glsl; INT4's codes staged as int8 in shared
	// memory): queries of any type and mode, quantized in the kernel; kernels of the coopmat tier
	// for the calls they fit, which the attention package chooses per call (few rows, dense
	// aligned K and V, INT4 of one scale group a row).
	{Name: "decode_int8_imma", Op: OpDecodeInt8, Tier: devices.TierCoopMat, Bindings: 13, PushSize: 4 * PushWords,
		Source: "decode.comp", Defines: []string{"TIER_COOPMAT", "KV_INT8", "IMMA"}, Env: "vulkan1.3", Alternate: true,
		Requires: immaNeeds},
	{Name: "decode_int4_imma", Op: OpDecodeInt4, Tier: devices.TierCoopMat, Bindings: 13, PushSize: 4 * PushWords,
		Source: "decode.comp", Defines: []string{"TIER_COOPMAT", "KV_INT4", "IMMA"}, Env: "vulkan1.3", Alternate: true,
		Requires: immaNeeds},
	{Name: "merge", Op: OpMerge, Tier: devices.TierScalar, Bindings: 8, PushSize: 4 * PushWords,
		Source: "merge.comp", Requires: scalarNeeds},
	// quantize.comp: plain compute, every format and input type through specialization
	// constants; its own bindings (x, codes, scales, and the multipliers of RoPE-aware key
	// scaling) and push constants (QuantizePushWords).
	{Name: "quantize", Op: OpQuantize, Tier: devices.TierScalar, Bindings: 4, PushSize: 4 * QuantizePushWords,
		Source: "quantize.comp", Requires: scalarNeeds},
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

// Best returns the variant of op at the fastest tier, no faster than max, among those whose
// required features the device has.
func Best(op Op, p *devices.Profile, max devices.Tier) (*Variant, error) {
	var best *Variant
	for i := range Variants {
		v := &Variants[i]
		if v.Op == op && !v.Alternate && v.Tier <= max && v.RunsOn(p) == nil && (best == nil || v.Tier > best.Tier) {
			best = v
		}
	}
	if best == nil {
		return nil, fmt.Errorf("shaders: no %s kernel at tier %s or below runs on %s", op, max, p.Name)
	}
	return best, nil
}

// ForTier returns the variant of op at exactly the given tier, whatever it requires; use
// ForTierOn to get one a device can run.
func ForTier(op Op, tier devices.Tier) (*Variant, error) {
	for i := range Variants {
		if v := &Variants[i]; v.Op == op && v.Tier == tier && !v.Alternate {
			return v, nil
		}
	}
	return nil, fmt.Errorf("shaders: no %s kernel at tier %s", op, tier)
}

// ForTierOn returns a variant of op at exactly the given tier that runs on the device: an error
// if there is none at the tier, or if the device lacks features each of them requires (the
// error names those of the first).
func ForTierOn(op Op, tier devices.Tier, p *devices.Profile) (*Variant, error) {
	var first error
	for i := range Variants {
		v := &Variants[i]
		if v.Op != op || v.Tier != tier || v.Alternate {
			continue
		}
		err := v.RunsOn(p)
		if err == nil {
			return v, nil
		}
		if first == nil {
			first = err
		}
	}
	if first != nil {
		return nil, first
	}
	return nil, fmt.Errorf("shaders: no %s kernel at tier %s", op, tier)
}

// ForInput returns the variant of op at exactly the given tier that takes inputs of type dt and
// runs on the device: an error that says which types the tier takes if none takes dt, or which
// features the device lacks.
func ForInput(op Op, tier devices.Tier, dt memory.DType, p *devices.Profile) (*Variant, error) {
	var takes []memory.DType
	for i := range Variants {
		v := &Variants[i]
		if v.Op != op || v.Tier != tier || v.Alternate {
			continue
		}
		if !v.Reads(dt) {
			takes = append(takes, v.Inputs...)
			continue
		}
		if err := v.RunsOn(p); err != nil {
			return nil, err
		}
		return v, nil
	}
	if takes == nil {
		return nil, fmt.Errorf("shaders: no %s kernel at tier %s", op, tier)
	}
	names := make([]string, len(takes))
	for i, t := range takes {
		names[i] = t.String()
	}
	return nil, fmt.Errorf("shaders: tier %s does not take %s inputs (it takes %s)", tier, dt, strings.Join(names, ", "))
}
