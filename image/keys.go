package image

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/loopcast/loopcast/internal/atomicfile"
)

// Keys are stored as PEM: PKCS #8 for the private key, PKIX for the public
// key, so that standard tools (openssl pkey) can read them.
const (
	pemPrivate = "PRIVATE KEY"
	pemPublic  = "PUBLIC KEY"
)

// KeyID is a short fingerprint of a public key for messages and reports.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:6])
}

// GenerateKeyFiles writes a new ed25519 key pair: the private key at path
// (mode 0600) and the public key at path with ".key" replaced by ".pub"
// (or ".pub" appended). It refuses to overwrite existing files.
func GenerateKeyFiles(path string) (pubPath string, err error) {
	pubPath = PublicKeyPath(path)
	for _, p := range []string{path, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return "", fmt.Errorf("image: %s exists; refusing to overwrite a key", p)
		}
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", fmt.Errorf("image: generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", fmt.Errorf("image: %w", err)
	}
	if err := atomicfile.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: pemPrivate, Bytes: der}), 0o600); err != nil {
		return "", err
	}
	der, err = x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("image: %w", err)
	}
	return pubPath, atomicfile.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: pemPublic, Bytes: der}), 0o644)
}

// PublicKeyPath returns the public key path that goes with a private key path.
func PublicKeyPath(path string) string {
	if len(path) > 4 && path[len(path)-4:] == ".key" {
		return path[:len(path)-4] + ".pub"
	}
	return path + ".pub"
}

// ReadPrivateKeyFile reads an ed25519 private key written by GenerateKeyFiles.
func ReadPrivateKeyFile(path string) (ed25519.PrivateKey, error) {
	der, err := readPEM(path, pemPrivate)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("image: %s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("image: %s: not an ed25519 key", path)
	}
	return priv, nil
}

// ReadPublicKeyFile reads an ed25519 public key written by GenerateKeyFiles.
func ReadPublicKeyFile(path string) (ed25519.PublicKey, error) {
	der, err := readPEM(path, pemPublic)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("image: %s: %w", path, err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("image: %s: not an ed25519 key", path)
	}
	return pub, nil
}

func readPEM(path, typ string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("image: %s: no PEM block", path)
	}
	if blk.Type != typ {
		return nil, fmt.Errorf("image: %s: PEM block is %q, want %q", path, blk.Type, typ)
	}
	return blk.Bytes, nil
}

var errNoKeys = errors.New("image: no trusted keys given")

// ReadTrustedKeys reads a set of public key files.
func ReadTrustedKeys(paths []string) ([]ed25519.PublicKey, error) {
	if len(paths) == 0 {
		return nil, errNoKeys
	}
	keys := make([]ed25519.PublicKey, 0, len(paths))
	for _, p := range paths {
		k, err := ReadPublicKeyFile(p)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}
