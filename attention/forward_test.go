package attention_test

import (
	"context"
	"testing"

	"github.com/vkattn/vkattn/attention/conformance"
)

// TestForwardConformance runs the conformance matrix at every tier the device runs, each tier
// forced. A failure prints the seed; VKATTN_SEED replays it.
func TestForwardConformance(t *testing.T) {
	e := engine(t)
	tiers := e.ForwardTiers()
	if len(tiers) == 0 {
		t.Fatalf("%s runs no forward tier", e.Profile().Name)
	}
	for _, tier := range tiers {
		t.Run(tier.String(), func(t *testing.T) {
			for _, c := range conformance.ForwardCases(tier) {
				t.Run(c.String(), func(t *testing.T) {
					engine(t)
					if o := conformance.Run(context.Background(), e, c, seed(t)); !o.Passed() {
						t.Fatalf("%s kernel %s: %s", c, o.Kernel, o.Error)
					}
				})
			}
		})
	}
}
