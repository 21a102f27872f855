package sse

import (
	"strconv"
	"testing"
)

// benchData is a typical order update, about 120 bytes.
const benchData = `{"order_id":"ord_8f14e45fceea167a","status":"shipped","items":3,"total_cents":12999,"currency":"EUR","seq":1042}`

// benchStream returns n events with distinct ids, as an order stream has.
func benchStream(n int) []byte {
	var b []byte
	for i := range n {
		b, _ = AppendMessage(b, Message{ID: strconv.Itoa(100000 + i), Event: "order.updated", Data: benchData})
	}
	return b
}

func BenchmarkAppendMessage(b *testing.B) {
	m := Message{ID: "100042", Event: "order.updated", Data: benchData}
	buf, _ := AppendMessage(nil, m)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = AppendMessage(buf[:0], m)
	}
}

func BenchmarkDecoder(b *testing.B) {
	const n = 1000
	stream := benchStream(n)
	d := NewDecoder(&repeatReader{b: stream})
	b.SetBytes(int64(len(stream) / n))
	b.ReportAllocs()
	events := 0
	for b.Loop() {
		if _, err := d.Next(); err != nil {
			b.Fatal(err)
		}
		events++
	}
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
}
