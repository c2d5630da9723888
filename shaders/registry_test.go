package shaders

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/memory"
	"github.com/vkattn/vkattn/vk"
)

// Every registered variant has embedded SPIR-V with a valid header and a main entry point, and
// names are unique.
func TestVariantsHaveSPIRV(t *testing.T) {
	seen := map[string]bool{}
	for i := range Variants {
		v := &Variants[i]
		require.False(t, seen[v.Name], "duplicate variant %s", v.Name)
		seen[v.Name] = true
		b, err := v.SPIRV()
		require.NoError(t, err)
		require.Zero(t, len(b)%4, v.Name)
		require.Equal(t, uint32(0x07230203), binary.LittleEndian.Uint32(b), "%s: SPIR-V magic", v.Name)
		require.Contains(t, string(b), "main\x00", v.Name)
		require.NotEmpty(t, v.Source, v.Name)
		require.Contains(t, []string{"vulkan1.2", "vulkan1.3"}, v.TargetEnv(), v.Name)
	}
	_, err := Lookup("no-such-kernel")
	require.Error(t, err)
}

// Every operation has a scalar variant, so every device runs every operation, and Best picks the
// fastest tier each simulated device supports.
func TestBestOnSimulatedDevices(t *testing.T) {
	ops := map[Op]bool{}
	for _, v := range Variants {
		ops[v.Op] = true
	}
	for op := range ops {
		v, err := ForTier(op, devices.TierScalar)
		require.NoError(t, err, "%s has no scalar variant", op)
		require.Equal(t, op, v.Op)
	}
	for _, name := range devices.SimulatedNames() {
		p, err := devices.Simulated(name)
		require.NoError(t, err)
		v, err := Best(OpForward, &p, devices.TierCoopMat2)
		require.NoError(t, err, name)
		require.True(t, p.Supports(v.Tier), name)
		for i := range Variants {
			w := &Variants[i]
			if w.Op == OpForward && p.Supports(w.Tier) {
				require.GreaterOrEqual(t, v.Tier, w.Tier, "%s: %s is faster than the chosen %s", name, w.Name, v.Name)
			}
		}
		capped, err := Best(OpForward, &p, devices.TierScalar)
		require.NoError(t, err)
		require.Equal(t, devices.TierScalar, capped.Tier)
	}
}

// Every variant declares what it requires, at least what its tier promises, and the subgroup
// kernel's requirements match the subgroup extensions its GLSL enables.
func TestVariantRequirements(t *testing.T) {
	for i := range Variants {
		v := &Variants[i]
		require.NotEmpty(t, v.Requires, v.Name)
		require.Contains(t, v.Requires, devices.FeatureCompute, v.Name)
		for _, f := range devices.TierRequires(v.Tier) {
			require.Contains(t, v.Requires, f, "%s: tier %s promises %s", v.Name, v.Tier, f)
		}
		seen := map[devices.Feature]bool{}
		for _, f := range v.Requires {
			require.False(t, seen[f], "%s lists %s twice", v.Name, f)
			seen[f] = true
			require.NotContains(t, f.String(), "feature(", v.Name)
		}
	}
	sg, err := Lookup("flash_fwd_subgroup")
	require.NoError(t, err)
	require.ElementsMatch(t, []devices.Feature{devices.FeatureCompute, devices.FeatureSubgroupBasic,
		devices.FeatureSubgroupArithmetic, devices.FeatureSubgroupVote, devices.FeatureSubgroupWidth}, sg.Requires)
	for _, name := range []string{"flash_fwd_scalar", "naive_scores", "naive_softmax", "naive_pv"} {
		v, err := Lookup(name)
		require.NoError(t, err)
		require.Equal(t, []devices.Feature{devices.FeatureCompute}, v.Requires, name)
	}
}

// On every simulated device, a variant runs exactly when the device has each feature it
// requires; Best and ForTierOn only return runnable variants.
func TestVariantRunsOnSimulatedDevices(t *testing.T) {
	for _, name := range devices.SimulatedNames() {
		p, err := devices.Simulated(name)
		require.NoError(t, err)
		for i := range Variants {
			v := &Variants[i]
			want := true
			for _, f := range v.Requires {
				want = want && p.Has(f)
			}
			require.Equal(t, want, v.RunsOn(&p) == nil, "%s on %s", v.Name, name)
			require.Equal(t, want, len(v.Missing(&p)) == 0, "%s on %s", v.Name, name)
			got, err := ForTierOn(v.Op, v.Tier, &p)
			if want {
				require.NoError(t, err)
				require.NoError(t, got.RunsOn(&p))
			}
		}
	}
}

// A device without subgroup vote in compute keeps the subgroup tier out of Best and ForTierOn,
// with an error naming the missing feature; the scalar kernels still run.
func TestBestSkipsVariantMissingFeature(t *testing.T) {
	for _, name := range devices.SimulatedNames() {
		p, err := devices.Simulated(name)
		require.NoError(t, err)
		v, err := Best(OpForward, &p, devices.TierCoopMat2)
		require.NoError(t, err)
		want := "flash_fwd_subgroup"
		if p.HasAll(coopMat2Needs) {
			want = "flash_fwd_coopmat2"
		} else if p.HasAll(coopMatNeeds) {
			want = "flash_fwd_coopmat"
		}
		require.Equal(t, want, v.Name, name)

		p.SubgroupOps &^= vk.SubgroupVote
		require.False(t, p.Has(devices.FeatureSubgroupVote))
		require.True(t, p.Has(devices.FeatureSubgroupArithmetic))
		v, err = Best(OpForward, &p, devices.TierCoopMat2)
		require.NoError(t, err)
		require.Equal(t, "flash_fwd_scalar", v.Name, name)
		_, err = ForTierOn(OpForward, devices.TierSubgroup, &p)
		require.ErrorContains(t, err, devices.FeatureSubgroupVote.String())
		require.NotContains(t, err.Error(), devices.FeatureSubgroupArithmetic.String())
		sg, _ := Lookup("flash_fwd_subgroup")
		require.Equal(t, []devices.Feature{devices.FeatureSubgroupVote}, sg.Missing(&p))
		for _, op := range []Op{OpForward, OpNaiveScores, OpNaiveSoftmax, OpNaivePV} {
			w, err := ForTierOn(op, devices.TierScalar, &p)
			require.NoError(t, err, "%s on %s", op, name)
			require.Equal(t, devices.TierScalar, w.Tier)
		}

		// Subgroups only in fragment shaders: no subgroup feature in compute.
		q, _ := devices.Simulated(name)
		q.SubgroupComputeStage = false
		v, err = Best(OpForward, &q, devices.TierCoopMat2)
		require.NoError(t, err)
		require.Equal(t, devices.TierScalar, v.Tier, name)
	}
	_, err := ForTierOn(OpForward, devices.TierCoopMat2, &devices.Profile{})
	require.ErrorContains(t, err, "does not run on")
}

// ForInput picks the variant of a tier that reads the input type, and says why it cannot: the
// tier takes other types (naming them), the device lacks the variant's features, or the tier has
// no kernel of the operation.
func TestForInput(t *testing.T) {
	h100, err := devices.Simulated("nvidia-h100")
	require.NoError(t, err)
	for _, c := range []struct {
		tier devices.Tier
		dt   memory.DType
		want string
	}{
		{devices.TierCoopMat, memory.F16, "flash_fwd_coopmat"},
		{devices.TierCoopMat, memory.BF16, "flash_fwd_coopmat_bf16"},
		{devices.TierCoopMat2, memory.BF16, "flash_fwd_coopmat2_bf16"},
		{devices.TierSubgroup, memory.BF16, "flash_fwd_subgroup"},
	} {
		v, err := ForInput(OpForward, c.tier, c.dt, &h100)
		require.NoError(t, err)
		require.Equal(t, c.want, v.Name)
		require.True(t, v.Reads(c.dt))
	}
	_, err = ForInput(OpForward, devices.TierCoopMat, memory.F32, &h100)
	require.EqualError(t, err, "shaders: tier coopmat does not take f32 inputs (it takes f16, bf16)")
	noBF16 := h100
	noBF16.Features.BFloat16CooperativeMatrix = false
	_, err = ForInput(OpForward, devices.TierCoopMat, memory.BF16, &noBF16)
	require.ErrorContains(t, err, "flash_fwd_coopmat_bf16 does not run on")
	require.ErrorContains(t, err, "bf16 cooperative matrices")
	v, err := ForInput(OpForward, devices.TierCoopMat, memory.F16, &noBF16)
	require.NoError(t, err, "the fp16 variant needs no bf16 feature")
	require.Equal(t, "flash_fwd_coopmat", v.Name)
	v, err = ForInput(OpDecode, devices.TierCoopMat, memory.F16, &h100)
	require.NoError(t, err)
	require.Equal(t, "decode_coopmat", v.Name)
	_, err = ForInput(OpDecodeInt8, devices.TierCoopMat, memory.BF16, &h100)
	require.EqualError(t, err, "shaders: tier coopmat does not take bf16 inputs (it takes f16)")
	_, err = ForInput(OpDecode, devices.TierCoopMat2, memory.F16, &h100)
	require.ErrorContains(t, err, "no decode kernel at tier coopmat2")
}
