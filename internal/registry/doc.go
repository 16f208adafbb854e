// Package registry is berth's one generic object store: create, get, list,
// update, patch, delete and watch for every kind, with Kubernetes' metadata,
// concurrency, selector, paging, finalizer and graceful-deletion semantics.
// What differs per kind (defaulting, validation, which fields a status update
// may change, table columns, field selectors) is a small Strategy in a
// sub-package per kind. Objects are stored as JSON in a storage.Interface.
package registry
