// Arrivals between workgroups: a workgroup's stores to coherent buffers, then one invocation's atomic
// on a counter, tell another workgroup (the last to arrive, or a chained dispatch's) that they are
// done; that one then reads them. Written by the letter of the memory model (scopes and semantics from
// GL_KHR_memory_scope_semantics, still under the GLSL450 memory model): a workgroup barrier that also
// releases buffer memory at device scope comes before the arrival's atomic, and one that acquires it
// after the atomic that saw the count; the atomics themselves are relaxed, ordered by those fences
// (a release fence before an atomic write synchronizes with an acquire fence after an atomic read
// that reads it, or a later value of it: every write to a counter is such an add, so each later value
// lies in the release sequence of every earlier add). A counter's reset to 0 for the next dispatch
// needs no fence: a pipeline barrier, or a chain link's fences, order it before that dispatch's adds.
// memoryBarrierBuffer() + barrier() orders the same on the drivers in use, but that
// barrier carries no buffer semantics, so the other invocations' stores were not ordered before the
// one invocation's atomic by any rule.
//
// The atomics stay relaxed for another reason too: lavapipe (Mesa 22.3) breaks a loop under divergent
// control flow that holds a memory barrier, which is what an atomic with memory semantics becomes (the
// folded attention's arrivals are such a loop; docs/performance.md, "Chained layers").
//
// Use: ARRIVAL_FENCE(); if (one invocation) n = ARRIVE(counter, k); ARRIVAL_FENCE(); then all read (and
// the last to arrive resets the counter). A waiter: one invocation polls LOAD_ARRIVALS until the count
// is reached, then ARRIVAL_FENCE(); then all read.
#extension GL_KHR_memory_scope_semantics : require

// Every invocation's earlier buffer stores and shared-memory writes are visible, device-wide and
// workgroup-wide, before any invocation goes on; what an invocation's atomic read saw is visible to
// all after it.
#define ARRIVAL_FENCE()                                                                                \
  controlBarrier(gl_ScopeWorkgroup, gl_ScopeDevice, gl_StorageSemanticsBuffer | gl_StorageSemanticsShared, \
                 gl_SemanticsAcquireRelease)
// Adds k to a counter (relaxed, device scope); returns the value before the add.
#define ARRIVE(counter, k) atomicAdd(counter, k)
// Reads a counter (relaxed, device scope): a poll, followed by ARRIVAL_FENCE() once it is enough.
#define LOAD_ARRIVALS(counter) atomicLoad(counter, gl_ScopeDevice, gl_StorageSemanticsNone, gl_SemanticsRelaxed)
