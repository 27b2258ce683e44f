// Package image turns a directory tree into a deterministic ext2 image and
// describes that image with a signed manifest.
//
// The writer needs no root, no mount and no external tool: it lays out the
// ext2 (revision 1) structures itself, byte for byte, from a scan of the
// tree. The same tree and options always give the same image, so the same
// release id.
//
// Beside each image the builder writes a layout file (image + ".layout",
// zstd-compressed, versioned): the geometry, and for every name its inode
// number, kind, size, content hash and blocks. A later build given the
// image as Options.Base keeps that geometry. A path whose kind still
// matches keeps its inode and is rewritten over its own old blocks first,
// so an unchanged file keeps its exact blocks; growth and new paths take
// free space, first fit from the start of the data area; deleted paths are
// freed. So a small change to the tree changes few chunks of the image,
// and hosts can reuse the chunks they already hold.
//
// The layout (version 2) also records what the scan saw of each source
// file (mtime, ctime, inode, device) and the image digest of its manifest.
// When the output can be a reflink of the base image (XFS, btrfs) and the
// base's layout, manifest and image belong together, a build on it starts
// from that clone: files whose size and stat match the base's scan are not
// read, only blocks whose bytes differ are written, blocks the base used
// and the new image does not are zeroed, and chunks nothing touched keep
// the base's hash and compressed frame. The image is byte for byte the one
// a build writing every block makes. The scan reads directories and stats
// on all cores and assembles the tree in one fixed order.
//
// The manifest cuts the image into fixed-size chunks (ChunkSize), each with
// its SHA-256; it carries the whole image's SHA-256, provenance, and an
// ed25519 signature. It is what the sender distributes and what receivers
// check every chunk against. This package touches neither the network nor
// any mount.
//
// A release is named by its ID (Manifest.ID: the first 8 bytes of the
// SHA-256 of the unsigned manifest body), the one type every package uses
// for a release. It is written as 16 lowercase hex digits (String, for
// file names such as images/<id>.img, and ParseID); the zero ID names no
// release and its text (Text, MarshalText for JSON) is empty. Text becomes an ID only
// through ParseID (or UnmarshalText), where it enters: a wire, a file, the
// command line. ID hashes the manifest: callers take it once.
package image
