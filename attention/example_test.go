package attention_test

import (
	"context"
	"fmt"
	"log"
	"math/rand/v2"

	"github.com/vkattn/vkattn/attention"
	"github.com/vkattn/vkattn/attention/conformance"
	"github.com/vkattn/vkattn/attention/reference"
	"github.com/vkattn/vkattn/memory"
)

// The README's example at a smaller size: causal grouped-query attention on the default device,
// checked against the float64 oracle. (Where the machine has no Vulkan device, the package's
// TestMain leaves the example out.)
func ExampleEngine_Forward() {
	e, err := attention.New(attention.Config{}) // default device; $VKATTN_DEVICE picks another
	if err != nil {
		log.Fatal(err)
	}
	defer e.Close()

	ctx := context.Background()
	const b, l, hq, hk, d = 1, 160, 8, 2, 64
	r := rand.New(rand.NewPCG(1, 2))
	randn := func(n int) []float32 { // fp16-exact values, so the oracle sees what the device does
		x := make([]float32, n)
		for i := range x {
			x[i] = memory.F16.Round(float32(r.NormFloat64()))
		}
		return x
	}
	qHost, kHost, vHost := randn(b*l*hq*d), randn(b*l*hk*d), randn(b*l*hk*d)
	q, err := e.Upload(ctx, memory.F16, qHost, b, l, hq, d)
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()
	k, err := e.Upload(ctx, memory.F16, kHost, b, l, hk, d)
	if err != nil {
		log.Fatal(err)
	}
	defer k.Close()
	v, err := e.Upload(ctx, memory.F16, vHost, b, l, hk, d)
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()

	res, err := e.Forward(ctx, q, k, v, attention.Options{Causal: true, LSE: true})
	if err != nil {
		log.Fatal(err) // bad shapes, dtypes or options: an error naming the argument; nothing ran
	}
	defer res.Close()
	out, err := res.O.Download(ctx) // [1, 160, 8, 64]
	if err != nil {
		log.Fatal(err)
	}

	p := reference.Params{Hq: hq, Hk: hk, D: d, CuSeqlensQ: reference.Uniform(b, l), CuSeqlensK: reference.Uniform(b, l),
		Causal: true, WindowLeft: -1, WindowRight: -1}
	want, _, err := reference.Forward(p, conformance.Widen(qHost), conformance.Widen(kHost), conformance.Widen(vHost))
	if err != nil {
		log.Fatal(err)
	}
	_, err = conformance.CompareOutput(out, want, conformance.Tolerance(memory.F16))
	fmt.Println("output", res.O.Shape, memory.F16, "matches the oracle:", err == nil)
	// Output: output [1 160 8 64] f16 matches the oracle: true
}
