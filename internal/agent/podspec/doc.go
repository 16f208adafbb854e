// Package podspec turns a container of a Pod spec into the process berth
// runs for it: the command with $(VAR) references expanded, the environment
// the kubelet would give it (env, envFrom, the downward API and the service
// links), the working directory and the user. It is pure apart from the
// ConfigMap and Secret lookups it is handed, so every rule is covered by
// table-driven tests.
//
// berth runs processes, not images, so a container needs a command unless its
// image is one berth has built in (the agnhost e2e image, and pause).
// Anything else fails with an *Error whose Reason is shown as the
// container's waiting reason.
package podspec
