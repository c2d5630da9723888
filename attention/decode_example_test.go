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

// One decode step of two sequences with a 300-token cache each: a new token per sequence, 8
// query heads sharing 2 key/value heads, the keys split into 4 chunks; checked against the
// float64 oracle.
func ExampleEngine_Decode() {
	e, err := attention.New(attention.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer e.Close()

	ctx := context.Background()
	const b, lq, lk, hq, hk, d = 2, 1, 300, 8, 2, 64
	r := rand.New(rand.NewPCG(3, 4))
	randn := func(n int) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = memory.F16.Round(float32(r.NormFloat64()))
		}
		return x
	}
	qHost, kHost, vHost := randn(b*lq*hq*d), randn(b*lk*hk*d), randn(b*lk*hk*d)
	q, err := e.Upload(ctx, memory.F16, qHost, b, lq, hq, d)
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()
	k, err := e.Upload(ctx, memory.F16, kHost, b, lk, hk, d)
	if err != nil {
		log.Fatal(err)
	}
	defer k.Close()
	v, err := e.Upload(ctx, memory.F16, vHost, b, lk, hk, d)
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()

	// Splits 0 would choose the chunks from the device and the lengths.
	res, err := e.Decode(ctx, q, k, v, attention.DecodeOptions{Options: attention.Options{Causal: true}, Splits: 4})
	if err != nil {
		log.Fatal(err)
	}
	defer res.Close()
	out, err := res.O.Download(ctx)
	if err != nil {
		log.Fatal(err)
	}

	p := reference.Params{Hq: hq, Hk: hk, D: d, CuSeqlensQ: reference.Uniform(b, lq), CuSeqlensK: reference.Uniform(b, lk),
		Causal: true, WindowLeft: -1, WindowRight: -1}
	want, _, err := reference.Forward(p, conformance.Widen(qHost), conformance.Widen(kHost), conformance.Widen(vHost))
	if err != nil {
		log.Fatal(err)
	}
	_, err = conformance.CompareOutput(out, want, conformance.Tolerance(memory.F16))
	fmt.Println("output", res.O.Shape, "matches the oracle:", err == nil)
	// Output: output [2 1 8 64] matches the oracle: true
}
