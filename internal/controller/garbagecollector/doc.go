// Package garbagecollector deletes objects whose owners are gone, following
// ownerReferences as Kubernetes' garbage collector does, in a simpler form:
//
//   - background: a dependent whose owners are all gone (checked with a live
//     GET, not just the cache) is deleted; so deleting a Deployment removes
//     its ReplicaSets and then their Pods;
//   - foreground: an owner with a deletionTimestamp and the
//     foregroundDeletion finalizer has its dependents deleted (those that
//     have dependents of their own in foreground too) and keeps the
//     finalizer until no dependent with blockOwnerDeletion is left;
//   - orphan: an owner with the orphan finalizer has its reference removed
//     from every dependent, then the finalizer.
//
// It watches a fixed list of resources through metadata-only informers (so
// any resource fits, at the cost of only its ObjectMeta) and keeps an
// in-memory index owner UID -> dependents. Unlike upstream it builds no
// graph of "virtual" owners: a dependent whose owner is not in the cache is
// checked with one GET of that owner, and owners confirmed absent are
// remembered by UID. Owners of kinds it does not watch are never treated as
// gone, so their dependents are left alone.
package garbagecollector
