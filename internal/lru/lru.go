// Package lru is a small bounded cache whose entries also expire: the
// verification results of atls (per evidence) and of snp (per VCEK chain)
// are kept in it.
package lru

import (
	"container/list"
	"sync"
	"time"
)

// Cache keeps at most a fixed number of entries, evicting the least
// recently used, and returns an entry only inside its validity window. A
// nil *Cache keeps nothing. It is safe for concurrent use.
type Cache[K comparable, V any] struct {
	mu    sync.Mutex
	max   int
	order *list.List // of *entry[K, V], most recently used first
	items map[K]*list.Element
}

type entry[K comparable, V any] struct {
	key                 K
	val                 V
	notBefore, notAfter time.Time
}

// New returns a cache of at most max entries, or nil (a cache that keeps
// nothing) when max is not positive.
func New[K comparable, V any](max int) *Cache[K, V] {
	if max <= 0 {
		return nil
	}
	return &Cache[K, V]{max: max, order: list.New(), items: map[K]*list.Element{}}
}

// Get returns the value of k if it is cached and now is inside its
// validity (a zero notBefore means no lower bound). An expired entry is
// dropped.
func (c *Cache[K, V]) Get(k K, now time.Time) (V, bool) {
	var zero V
	if c == nil {
		return zero, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[k]
	if !ok {
		return zero, false
	}
	e := el.Value.(*entry[K, V])
	if now.After(e.notAfter) {
		c.order.Remove(el)
		delete(c.items, k)
		return zero, false
	}
	if now.Before(e.notBefore) {
		return zero, false
	}
	c.order.MoveToFront(el)
	return e.val, true
}

// Put stores v under k, valid from notBefore to notAfter.
func (c *Cache[K, V]) Put(k K, v V, notBefore, notAfter time.Time) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[k]; ok {
		el.Value = &entry[K, V]{key: k, val: v, notBefore: notBefore, notAfter: notAfter}
		c.order.MoveToFront(el)
		return
	}
	c.items[k] = c.order.PushFront(&entry[K, V]{key: k, val: v, notBefore: notBefore, notAfter: notAfter})
	for c.order.Len() > c.max {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.items, oldest.Value.(*entry[K, V]).key)
	}
}

// Len returns the number of entries.
func (c *Cache[K, V]) Len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
