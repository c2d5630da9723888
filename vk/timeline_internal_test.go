package vk

import "testing"

// TestPickBindQueue: binds get a queue of their own where the device has one, and a family
// that can bind where the compute family cannot.
func TestPickBindQueue(t *testing.T) {
	sb := func(queues int) queueFamily { return queueFamily{binds: true, queues: queues} }
	plain := func(queues int) queueFamily { return queueFamily{queues: queues} }
	for _, c := range []struct {
		name           string
		fams           []queueFamily
		compute        int
		sparse, shared bool
		want           bindChoice
	}{
		{"one queue (lavapipe)", []queueFamily{sb(1)}, 0, true, false, bindChoice{0, 0}},
		{"second queue of the compute family", []queueFamily{sb(16), plain(2), sb(8)}, 0, true, false, bindChoice{0, 1}},
		{"shared", []queueFamily{sb(16), sb(2)}, 0, true, true, bindChoice{0, 0}},
		{"another family", []queueFamily{sb(1), plain(4), sb(2)}, 0, true, false, bindChoice{2, 0}},
		{"compute family cannot bind", []queueFamily{plain(4), sb(1)}, 0, true, false, bindChoice{1, 0}},
		{"compute family cannot bind, shared", []queueFamily{plain(4), sb(1)}, 0, true, true, bindChoice{1, 0}},
		{"compute is a later family", []queueFamily{plain(1), sb(1)}, 1, true, false, bindChoice{1, 0}},
		{"no family binds", []queueFamily{plain(4), plain(2)}, 0, true, false, bindChoice{-1, 0}},
		{"no sparse binding", []queueFamily{sb(4)}, 0, false, false, bindChoice{-1, 0}},
		{"a family without queues", []queueFamily{plain(1), sb(0)}, 0, true, false, bindChoice{-1, 0}},
		{"no compute family", []queueFamily{sb(1)}, -1, true, false, bindChoice{-1, 0}},
	} {
		if got := pickBindQueue(c.fams, c.compute, c.sparse, c.shared); got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
}
