package devices

import (
	"fmt"
	"strings"

	"github.com/vkattn/vkattn/vk"
)

// Feature is one device capability a kernel variant may require (shaders.Variant.Requires). A
// profile has a feature when the device offers it to compute shaders.
type Feature int

// Features kernels can require.
const (
	// FeatureCompute: a queue family with compute; every kernel needs it.
	FeatureCompute Feature = iota + 1
	// FeatureSubgroupBasic: GL_KHR_shader_subgroup_basic (gl_SubgroupID, gl_SubgroupInvocationID,
	// subgroupBarrier, ...) in compute shaders.
	FeatureSubgroupBasic
	// FeatureSubgroupVote: GL_KHR_shader_subgroup_vote (subgroupAny, subgroupAll) in compute.
	FeatureSubgroupVote
	// FeatureSubgroupArithmetic: GL_KHR_shader_subgroup_arithmetic (subgroupAdd, subgroupMax,
	// ...) in compute.
	FeatureSubgroupArithmetic
	// FeatureSubgroupBallot: GL_KHR_shader_subgroup_ballot in compute.
	FeatureSubgroupBallot
	// FeatureSubgroupShuffle: GL_KHR_shader_subgroup_shuffle in compute.
	FeatureSubgroupShuffle
	// FeatureSubgroupWidth: a known subgroup width of at least 4 lanes that kernels can size their
	// tiles for: the width is fixed (min = max) or can be pinned through subgroup size control.
	FeatureSubgroupWidth
	// FeatureFloat16: fp16 arithmetic and 16-bit storage-buffer access in shaders.
	FeatureFloat16
	// FeatureBFloat16: bf16 arithmetic in shaders (VK_KHR_shader_bfloat16).
	FeatureBFloat16
	// FeatureCooperativeMatrix: VK_KHR_cooperative_matrix with a subgroup-scope fp16 x fp16 + fp32
	// shape.
	FeatureCooperativeMatrix
	// FeatureCooperativeMatrix2: VK_NV_cooperative_matrix2.
	FeatureCooperativeMatrix2
	// FeatureBFloat16Matrix: bf16 as a shader type and as cooperative-matrix elements
	// (VK_KHR_shader_bfloat16: shaderBFloat16Type and shaderBFloat16CooperativeMatrix).
	FeatureBFloat16Matrix
	// FeatureVulkanMemoryModel: the Vulkan memory model in shaders (cooperative-matrix code uses it).
	FeatureVulkanMemoryModel
	// FeatureMaintenance4: maintenance4, for the LocalSizeId workgroup sizes that SPIR-V for the
	// Vulkan 1.3 environment uses.
	FeatureMaintenance4
	// FeatureInt8Matrix: a subgroup-scope 16x16x32 s8 x s8 + s32 cooperative-matrix shape without
	// saturating accumulation, the f16 16x16x16 shape with f32 accumulation (whose 16x16 f32
	// accumulators hold the output), int8 arithmetic (shaderInt8) and int8 loads from storage
	// buffers (storageBuffer8BitAccess).
	FeatureInt8Matrix
)

// AllFeatures lists every feature.
var AllFeatures = []Feature{FeatureCompute, FeatureSubgroupBasic, FeatureSubgroupVote, FeatureSubgroupArithmetic,
	FeatureSubgroupBallot, FeatureSubgroupShuffle, FeatureSubgroupWidth, FeatureFloat16, FeatureBFloat16,
	FeatureCooperativeMatrix, FeatureCooperativeMatrix2, FeatureBFloat16Matrix, FeatureVulkanMemoryModel, FeatureMaintenance4, FeatureInt8Matrix}

func (f Feature) String() string {
	switch f {
	case FeatureCompute:
		return "compute queue"
	case FeatureSubgroupBasic:
		return "subgroup basic ops in compute"
	case FeatureSubgroupVote:
		return "subgroup vote ops in compute"
	case FeatureSubgroupArithmetic:
		return "subgroup arithmetic ops in compute"
	case FeatureSubgroupBallot:
		return "subgroup ballot ops in compute"
	case FeatureSubgroupShuffle:
		return "subgroup shuffle ops in compute"
	case FeatureSubgroupWidth:
		return "fixed or controllable subgroup width >= 4"
	case FeatureFloat16:
		return "fp16 arithmetic and 16-bit storage"
	case FeatureBFloat16:
		return "bf16 arithmetic"
	case FeatureCooperativeMatrix:
		return "cooperative matrix (KHR, fp16 subgroup shape)"
	case FeatureCooperativeMatrix2:
		return "cooperative matrix 2 (NV)"
	case FeatureBFloat16Matrix:
		return "bf16 cooperative matrices"
	case FeatureVulkanMemoryModel:
		return "Vulkan memory model"
	case FeatureMaintenance4:
		return "maintenance4 (LocalSizeId)"
	case FeatureInt8Matrix:
		return "int8 cooperative matrices (16x16x32, s32 accumulation) and 8-bit storage"
	}
	return fmt.Sprintf("feature(%d)", int(f))
}

// Has reports whether the device offers the feature.
func (p *Profile) Has(f Feature) bool {
	subgroupOp := func(bit uint32) bool {
		return p.Has(FeatureCompute) && p.SubgroupComputeStage && p.SubgroupOps&bit != 0
	}
	switch f {
	case FeatureCompute:
		return p.ComputeFamily >= 0
	case FeatureSubgroupBasic:
		return subgroupOp(vk.SubgroupBasic)
	case FeatureSubgroupVote:
		return subgroupOp(vk.SubgroupVote)
	case FeatureSubgroupArithmetic:
		return subgroupOp(vk.SubgroupArithmetic)
	case FeatureSubgroupBallot:
		return subgroupOp(vk.SubgroupBallot)
	case FeatureSubgroupShuffle:
		return subgroupOp(vk.SubgroupShuffle)
	case FeatureSubgroupWidth:
		fixedOrControlled := p.MinSubgroupSize == p.MaxSubgroupSize || p.Features.SubgroupSizeControl
		return p.SubgroupSize >= 4 && fixedOrControlled
	case FeatureFloat16:
		return p.Features.ShaderFloat16 && p.Features.StorageBuffer16Bit
	case FeatureBFloat16:
		return p.Features.BFloat16
	case FeatureCooperativeMatrix:
		return p.Features.CooperativeMatrix && p.CoopMatShape(vk.ComponentF16) != nil
	case FeatureCooperativeMatrix2:
		return p.Features.CooperativeMatrix2
	case FeatureBFloat16Matrix:
		return p.Features.BFloat16 && p.Features.BFloat16CooperativeMatrix
	case FeatureVulkanMemoryModel:
		return p.Features.VulkanMemoryModel
	case FeatureMaintenance4:
		return p.Features.Maintenance4
	case FeatureInt8Matrix:
		return p.Features.CooperativeMatrix && p.Features.ShaderInt8 && p.Features.StorageBuffer8Bit &&
			p.HasCoopMatShapeOf(vk.ComponentS8, vk.ComponentS32, 16, 16, 32) && p.HasCoopMatShape(vk.ComponentF16, 16, 16, 16)
	}
	return false
}

// Missing returns the features of fs the device lacks, in order; nil when it has them all.
func (p *Profile) Missing(fs []Feature) []Feature {
	var out []Feature
	for _, f := range fs {
		if !p.Has(f) {
			out = append(out, f)
		}
	}
	return out
}

// HasAll reports whether the device has every feature of fs.
func (p *Profile) HasAll(fs []Feature) bool { return len(p.Missing(fs)) == 0 }

// TierRequires lists the features every device of the tier has (what Supports checks); a kernel
// variant of the tier may require more (shaders.Variant.Requires). TierAuto requires what
// TierScalar does.
func TierRequires(t Tier) []Feature {
	switch t {
	case TierAuto, TierScalar:
		return []Feature{FeatureCompute}
	case TierSubgroup:
		return append(TierRequires(TierScalar), FeatureSubgroupBasic, FeatureSubgroupArithmetic,
			FeatureSubgroupVote, FeatureSubgroupWidth)
	case TierCoopMat:
		return append(TierRequires(TierSubgroup), FeatureCooperativeMatrix)
	case TierCoopMat2:
		return append(TierRequires(TierCoopMat), FeatureCooperativeMatrix2)
	}
	return nil
}

// FeatureList joins feature names for messages: "a, b and c".
func FeatureList(fs []Feature) string {
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = f.String()
	}
	if len(names) <= 1 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}
