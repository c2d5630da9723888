package attention_test

import (
	"context"
	"fmt"
	"log"

	"github.com/vkattn/vkattn/attention"
	"github.com/vkattn/vkattn/memory"
)

// The README's example: causal grouped-query attention on the default device.
func ExampleEngine_Forward() {
	e, err := attention.New(attention.Config{}) // default device; $VKATTN_DEVICE picks another
	if err != nil {
		log.Fatal(err)
	}
	defer e.Close()

	ctx := context.Background()
	const b, l, hq, hk, d = 1, 2048, 16, 4, 128
	qHost := make([]float32, b*l*hq*d) // fill with real data
	kvHost := make([]float32, b*l*hk*d)
	q, err := e.Upload(ctx, memory.F16, qHost, b, l, hq, d)
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()
	k, err := e.Upload(ctx, memory.F16, kvHost, b, l, hk, d)
	if err != nil {
		log.Fatal(err)
	}
	defer k.Close()
	v, err := e.Upload(ctx, memory.F16, kvHost, b, l, hk, d)
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()

	res, err := e.Forward(ctx, q, k, v, attention.Options{Causal: true, LSE: true})
	if err != nil {
		log.Fatal(err) // bad shapes, dtypes or options: an error naming the argument; nothing ran
	}
	defer res.Close()
	out, err := res.O.Download(ctx) // [1, 2048, 16, 128]
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(out), res.Kernel)
}
