package main

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/confidential-go/atls/atls/attest"
	"github.com/confidential-go/atls/atls/snp"
)

// The simulator's state: a simulated AMD chain (ARK and ASK with their
// private keys) and the identity of one simulated VM, persisted so that
// separate atls processes (a server, a client, certgen, roots export)
// agree on them.
const (
	simChainFile = "sim-chain.pem"
	simVMFile    = "sim-vm.json"
	simProduct   = "Milan"
)

// simStore is the simulator directory.
type simStore struct {
	dir    string
	stderr io.Writer
}

// defaultSimDir is <user config dir>/atls/sim.
func defaultSimDir() (string, error) {
	cfg, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no --sim-dir given and no user configuration directory: %w", err)
	}
	return filepath.Join(cfg, "atls", "sim"), nil
}

func openSimStore(dir string, stderr io.Writer) (*simStore, error) {
	if dir == "" {
		d, err := defaultSimDir()
		if err != nil {
			return nil, err
		}
		dir = d
	}
	return &simStore{dir: dir, stderr: stderr}, nil
}

// existingChain returns the persisted chain, or nil if there is none. It
// never creates one.
func (s *simStore) existingChain() (*snp.SimChain, error) {
	path := filepath.Join(s.dir, simChainFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	c, err := snp.ParseSimChainPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (delete it to make a new simulated chain)", path, err)
	}
	return c, nil
}

// chain returns the persisted chain, creating it on first use.
func (s *simStore) chain() (*snp.SimChain, error) {
	if c, err := s.existingChain(); c != nil || err != nil {
		return c, err
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, fmt.Errorf("simulator directory: %w", err)
	}
	fmt.Fprintln(s.stderr, "atls: creating a simulated AMD chain (RSA-4096), this takes a few seconds...")
	c, err := snp.NewSimChain(simProduct)
	if err != nil {
		return nil, err
	}
	data, err := c.MarshalPEM()
	if err != nil {
		return nil, err
	}
	path := filepath.Join(s.dir, simChainFile)
	created, err := writeNew(path, data, 0o600)
	if err != nil {
		return nil, fmt.Errorf("saving the simulated chain: %w", err)
	}
	if !created {
		// Another process made one meanwhile: use that one.
		return s.existingChain()
	}
	fmt.Fprintf(s.stderr, "atls: saved the simulated AMD chain (%s, private keys included) to %s\n", c.Product, path)
	return c, nil
}

// simVM is the persisted identity of the simulated VM.
type simVM struct {
	ChipID      attest.HexBytes `json:"chip_id"`
	Measurement attest.HexBytes `json:"measurement"`
	ReportID    attest.HexBytes `json:"report_id"`
	Created     time.Time       `json:"created"`
}

// vm returns the persisted VM identity, creating a random one on first
// use.
func (s *simStore) vm() (*simVM, error) {
	path := filepath.Join(s.dir, simVMFile)
	read := func() (*simVM, error) {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		var v simVM
		if err := json.Unmarshal(data, &v); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(v.ChipID) != 64 || len(v.Measurement) != 48 || len(v.ReportID) != 32 {
			return nil, fmt.Errorf("%s: want a 64-byte chip_id, a 48-byte measurement and a 32-byte report_id (delete it to make a new simulated VM)", path)
		}
		return &v, nil
	}
	v, err := read()
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return v, err
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, fmt.Errorf("simulator directory: %w", err)
	}
	v = &simVM{
		ChipID:      make([]byte, 64),
		Measurement: make([]byte, 48),
		ReportID:    make([]byte, 32),
		Created:     time.Now().UTC().Truncate(time.Second),
	}
	for _, b := range [][]byte{v.ChipID, v.Measurement, v.ReportID} {
		_, _ = rand.Read(b)
	}
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	created, err := writeNew(path, append(data, '\n'), 0o600)
	if err != nil {
		return nil, fmt.Errorf("saving the simulated VM: %w", err)
	}
	if !created {
		return read()
	}
	fmt.Fprintf(s.stderr, "atls: created a simulated VM (measurement %s) in %s\n", v.Measurement, path)
	return v, nil
}

// attester returns a simulated attester for the persisted VM, with the
// measurement replaced by override when it is not nil.
func (s *simStore) attester(override *[48]byte) (*snp.SimAttester, error) {
	chain, err := s.chain()
	if err != nil {
		return nil, err
	}
	vm, err := s.vm()
	if err != nil {
		return nil, err
	}
	var o snp.SimOptions
	copy(o.ChipID[:], vm.ChipID)
	copy(o.Measurement[:], vm.Measurement)
	copy(o.ReportID[:], vm.ReportID)
	if override != nil {
		o.Measurement = *override
	}
	return snp.NewSimAttester(chain, o)
}

// writeNew writes data to path only if path does not exist yet, without
// ever exposing a partly written file: it writes a temporary file and
// links it into place. created is false when path already existed.
func writeNew(path string, data []byte, perm fs.FileMode) (created bool, err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return false, err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Close(); err != nil {
		return false, err
	}
	err = os.Link(tmp.Name(), path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrExist):
		return false, nil
	}
	// A file system without hard links: fall back to an exclusive create.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return false, err
	}
	return true, f.Close()
}
