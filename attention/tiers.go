package attention

import (
	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/memory"
	"github.com/vkattn/vkattn/shaders"
)

// ForwardDTypes are the storage types of q, k and v that Forward takes at some tier.
var ForwardDTypes = []memory.DType{memory.F32, memory.F16, memory.BF16}

// TierSupport is what Forward runs at one tier on a device: the calls whose input type is one of
// Inputs and whose head dim is one of InputHeadDims[input type]. HeadDims are the head dims it runs
// for some input type: the same for every type unless the device's matrix shapes differ by type
// (the matrix tiers size their tiles from the shapes the device offers for the input type).
type TierSupport struct {
	Tier          devices.Tier
	Inputs        []memory.DType
	HeadDims      []int
	InputHeadDims map[memory.DType][]int
}

// ForwardSupport lists, slowest first, the tiers at which Forward runs on a device with profile p
// (each can be forced with Options.Tier), with the input types and head dims each runs there. A
// tier is listed when Forward accepts it for at least one input type of ForwardDTypes and one
// head dim of HeadDims: the device has every feature the tier's kernel requires and the tier's
// tiles fit the device (for the coopmat tier, 16x16x16 cooperative matrices of the input type and
// subgroups of 16 lanes or more).
func ForwardSupport(p *devices.Profile) []TierSupport {
	var out []TierSupport
	for _, t := range devices.Tiers {
		s := TierSupport{Tier: t, InputHeadDims: map[memory.DType][]int{}}
		dims := map[int]bool{}
		for _, dt := range ForwardDTypes {
			for _, d := range HeadDims {
				if _, _, err := selectForward(p, t, dt, d); err == nil {
					s.InputHeadDims[dt] = append(s.InputHeadDims[dt], d)
					dims[d] = true
				}
			}
			if len(s.InputHeadDims[dt]) > 0 {
				s.Inputs = append(s.Inputs, dt)
			}
		}
		for _, d := range HeadDims {
			if dims[d] {
				s.HeadDims = append(s.HeadDims, d)
			}
		}
		if len(s.Inputs) > 0 {
			out = append(out, s)
		}
	}
	return out
}

// ForwardTiersOn lists the tiers of ForwardSupport(p).
func ForwardTiersOn(p *devices.Profile) []devices.Tier {
	var out []devices.Tier
	for _, s := range ForwardSupport(p) {
		out = append(out, s.Tier)
	}
	return out
}

// ForwardTiers lists, slowest first, the tiers at which Forward runs on the engine's device for
// at least one input type and head dim; each can be forced with Options.Tier. See ForwardSupport.
func (e *Engine) ForwardTiers() []devices.Tier {
	return ForwardTiersOn(&e.profile)
}

// AutoForward returns the tier and kernel that Forward chooses automatically (Options.Tier and
// $VKATTN_TIER unset) for inputs of type dt and head dim d (one of HeadDims) on a device with
// profile p, or why none runs them.
func AutoForward(p *devices.Profile, dt memory.DType, d int) (devices.Tier, string, error) {
	v, _, err := selectForward(p, devices.TierAuto, dt, d)
	if err != nil {
		return devices.TierAuto, "", err
	}
	return v.Tier, v.Name, nil
}

// ForwardInputs lists the storage types the forward kernels of a tier take on a device that runs
// them all; the automatic choice runs other types at a slower tier. A device may run a tier for
// some of these types only (the matrix tiers have a kernel per type): see ForwardSupport and
// Engine.TierInputs.
func ForwardInputs(t devices.Tier) []memory.DType { return opInputs(shaders.OpForward, t) }

// DecodeInputs is ForwardInputs for Decode's kernels: every type at the scalar and subgroup
// tiers, fp16 and bf16 at the coopmat tier. See Engine.DecodeTierInputs for a device's.
func DecodeInputs(t devices.Tier) []memory.DType { return opInputs(shaders.OpDecode, t) }

// QuantizedDecodeInputs is DecodeInputs for DecodeQuantized's kernels, the type of their queries
// and outputs: every type at the scalar and subgroup tiers, fp16 at the coopmat tier.
func QuantizedDecodeInputs(t devices.Tier) []memory.DType {
	return common(opInputs(shaders.OpDecodeInt8, t), opInputs(shaders.OpDecodeInt4, t))
}

// opInputs lists the types of ForwardDTypes that some kernel of op at tier t takes, in every call
// (not an Alternate kernel, which takes some calls).
func opInputs(op shaders.Op, t devices.Tier) []memory.DType {
	var out []memory.DType
	for _, dt := range ForwardDTypes {
		for i := range shaders.Variants {
			v := &shaders.Variants[i]
			if v.Op == op && v.Tier == t && !v.Alternate && v.Reads(dt) {
				out = append(out, dt)
				break
			}
		}
	}
	return out
}

// TierInputs lists the storage types Forward takes at tier t on the engine's device (those of
// ForwardSupport); empty when the tier does not run there.
func (e *Engine) TierInputs(t devices.Tier) []memory.DType {
	for _, s := range ForwardSupport(&e.profile) {
		if s.Tier == t {
			return s.Inputs
		}
	}
	return nil
}
