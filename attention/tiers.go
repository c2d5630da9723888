package attention

import (
	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/shaders"
)

// ForwardTiers lists the tiers, slowest first, at which Forward can run on the engine's device:
// each can be forced with Options.Tier.
func (e *Engine) ForwardTiers() []devices.Tier {
	var out []devices.Tier
	for _, t := range devices.Tiers {
		if _, err := shaders.ForTier(shaders.OpForward, t); err == nil && e.profile.Supports(t) {
			out = append(out, t)
		}
	}
	return out
}
