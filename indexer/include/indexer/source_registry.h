/*
 * An image source (struct idx_source, see source.h) reading from an OCI distribution
 * registry through the registry module's client.
 *
 * Blob streams deliver bytes as they arrive from the network (a download thread and a
 * bounded 4 MiB ring buffer), so a layer is indexed while it downloads and never touches
 * the disk. When a stream for layer i of the last manifest fetched is opened, the stream of
 * layer i+1 is opened as well, so its first megabytes download while layer i is consumed.
 *
 * Like every source, one thread at a time; streams are independent.
 */
#pragma once

struct idx_source;
struct reg_options;

/*
 * Open `ref` (an image reference, e.g. "ghcr.io/o/r:v1" or "127.0.0.1:5000/x@sha256:...")
 * with client options `o` (NULL: defaults; strings are copied). The reference is validated
 * here; nothing is fetched until get_manifest. The source's `ref` is the canonical form
 * ("docker.io/library/python:3.12"; a "docker://" prefix is accepted and dropped), the key
 * `isorun pull` and `isorun-index` record images under. Returns 0, -EINVAL (malformed reference, logged with the reason),
 * -ENOTSUP (digest algorithm), -ENOMEM. Free with idx_source_free().
 */
int idx_source_registry_open(const char *ref, const struct reg_options *o, struct idx_source **ret);
