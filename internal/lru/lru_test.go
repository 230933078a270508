package lru

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestCache(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	c := New[int, string](2)
	c.Put(1, "a", time.Time{}, t0.Add(time.Hour))
	c.Put(2, "b", t0, t0.Add(time.Hour))
	v, ok := c.Get(1, t0)
	require.True(t, ok)
	require.Equal(t, "a", v)

	// 2 is now the least recently used: a third entry evicts it.
	c.Put(3, "c", t0, t0.Add(time.Hour))
	_, ok = c.Get(2, t0)
	require.False(t, ok)
	require.Equal(t, 2, c.Len())

	// Outside the validity window.
	_, ok = c.Get(3, t0.Add(-time.Second))
	require.False(t, ok, "before notBefore")
	_, ok = c.Get(3, t0.Add(2*time.Hour))
	require.False(t, ok, "after notAfter")
	require.Equal(t, 1, c.Len(), "expired entries are dropped")

	// Replacing an entry updates value and window.
	c.Put(1, "z", t0, t0.Add(3*time.Hour))
	v, ok = c.Get(1, t0.Add(2*time.Hour))
	require.True(t, ok)
	require.Equal(t, "z", v)
}

func TestNilCacheKeepsNothing(t *testing.T) {
	c := New[string, int](0)
	require.Nil(t, c)
	c.Put("k", 1, time.Time{}, time.Now().Add(time.Hour))
	_, ok := c.Get("k", time.Now())
	require.False(t, ok)
	require.Zero(t, c.Len())
}
