// Command tloginterop checks motte's transparency-log formats with Go's reference code
// (golang.org/x/mod/sumdb/note and sumdb/tlog), and emits Go-made vectors for motte to check.
//
// It reads one JSON request on stdin and writes one JSON answer on stdout:
//
//	tloginterop check    verify motte's note, tree, inclusion and consistency proofs
//	tloginterop vectors  make a Go-signed checkpoint and Go proofs for motte to verify
//	tloginterop tiles    read motte's served C2SP tiles with tlog.TileHashReader and prove
//
// Ed25519 cosignatures (C2SP tlog-cosignature, type 0x04) are not in x/mod v0.7.0; they are
// checked by a note.Verifier written here from the spec, still parsed by note.Open.
package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type inclusion struct {
	Index int64    `json:"index"`
	Size  int64    `json:"size"`
	Proof []string `json:"proof"`
}

type consistency struct {
	Old   int64    `json:"old"`
	New   int64    `json:"new"`
	Proof []string `json:"proof"`
}

type request struct {
	LogKey      string        `json:"log_key"`
	Cosigners   []string      `json:"cosigners"`
	Note        string        `json:"note"`
	Entries     []string      `json:"entries"`
	Inclusion   []inclusion   `json:"inclusion"`
	Consistency []consistency `json:"consistency"`
	URL         string        `json:"url"`
	Sizes       []int64       `json:"sizes"`
	Indexes     []int64       `json:"indexes"`
}

type answer struct {
	NoteError   string            `json:"note_error"`
	Signers     []string          `json:"signers"`
	Origin      string            `json:"origin"`
	Size        int64             `json:"size"`
	RootError   string            `json:"root_error"`
	Inclusion   []string          `json:"inclusion"`
	Consistency []string          `json:"consistency"`
	Vectors     *vectors          `json:"vectors,omitempty"`
	Extra       map[string]string `json:"extra,omitempty"`
}

type vectors struct {
	LogKey      string        `json:"log_key"`
	Note        string        `json:"note"`
	Tampered    string        `json:"tampered"`
	Entries     []string      `json:"entries"`
	Roots       []string      `json:"roots"`
	Inclusion   []inclusion   `json:"inclusion"`
	Consistency []consistency `json:"consistency"`
}

// cosigVerifier checks C2SP tlog-cosignature/v1 Ed25519 cosignatures (signature type 0x04).
type cosigVerifier struct {
	name string
	hash uint32
	key  ed25519.PublicKey
}

func (v *cosigVerifier) Name() string    { return v.name }
func (v *cosigVerifier) KeyHash() uint32 { return v.hash }
func (v *cosigVerifier) Verify(msg, sig []byte) bool {
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	t := binary.BigEndian.Uint64(sig[:8])
	signed := []byte(fmt.Sprintf("cosignature/v1\ntime %d\n", t))
	return ed25519.Verify(v.key, append(signed, msg...), sig[8:])
}

func newCosigVerifier(vkey string) (note.Verifier, error) {
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) != 3 {
		return nil, errors.New("malformed cosigner vkey")
	}
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) != 33 || raw[0] != 0x04 {
		return nil, errors.New("not an Ed25519 cosigner key")
	}
	h := sha256.Sum256(append([]byte(parts[0]+"\n\x04"), raw[1:]...))
	v := &cosigVerifier{parts[0], binary.BigEndian.Uint32(h[:4]), ed25519.PublicKey(raw[1:])}
	if fmt.Sprintf("%08x", v.hash) != parts[1] {
		return nil, errors.New("cosigner key ID does not match")
	}
	return v, nil
}

// parseCheckpoint reads a C2SP checkpoint body: origin, size, base64 root (extensions ignored).
func parseCheckpoint(text string) (string, int64, tlog.Hash, error) {
	lines := strings.SplitN(text, "\n", 4)
	if len(lines) < 4 {
		return "", 0, tlog.Hash{}, errors.New("checkpoint has fewer than three lines")
	}
	n, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != lines[1] {
		return "", 0, tlog.Hash{}, errors.New("bad tree size")
	}
	h, err := tlog.ParseHash(lines[2])
	return lines[0], n, h, err
}

func hashes(b64 []string) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(b64))
	for i, s := range b64 {
		h, err := tlog.ParseHash(s)
		if err != nil {
			return nil, err
		}
		out[i] = h
	}
	return out, nil
}

// memTree stores the hashes of a tree built with tlog.StoredHashes, Go's way.
type memTree struct{ stored []tlog.Hash }

func (t *memTree) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x >= int64(len(t.stored)) {
			return nil, fmt.Errorf("hash %d not stored", x)
		}
		out[i] = t.stored[x]
	}
	return out, nil
}

func build(entries [][]byte) (*memTree, error) {
	t := &memTree{}
	for n, e := range entries {
		hs, err := tlog.StoredHashes(int64(n), e, t)
		if err != nil {
			return nil, err
		}
		t.stored = append(t.stored, hs...)
	}
	return t, nil
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func check(req request) (answer, error) {
	var a answer
	var vs []note.Verifier
	if req.LogKey != "" {
		v, err := note.NewVerifier(req.LogKey)
		if err != nil {
			return a, err
		}
		vs = append(vs, v)
	}
	for _, k := range req.Cosigners {
		v, err := newCosigVerifier(k)
		if err != nil {
			return a, err
		}
		vs = append(vs, v)
	}
	var root tlog.Hash
	if req.Note != "" {
		n, err := note.Open([]byte(req.Note), note.VerifierList(vs...))
		a.NoteError = errString(err)
		if err == nil {
			for _, s := range n.Sigs {
				a.Signers = append(a.Signers, s.Name)
			}
			a.Origin, a.Size, root, err = parseCheckpoint(n.Text)
			a.NoteError = errString(err)
		}
	}
	entries := make([][]byte, len(req.Entries))
	for i, e := range req.Entries {
		b, err := base64.StdEncoding.DecodeString(e)
		if err != nil {
			return a, err
		}
		entries[i] = b
	}
	tree, err := build(entries)
	if err != nil {
		return a, err
	}
	if req.Note != "" && a.NoteError == "" {
		th, err := tlog.TreeHash(a.Size, tree)
		if err == nil && th != root {
			err = fmt.Errorf("Go computes root %v for size %d, the checkpoint says %v", th, a.Size, root)
		}
		a.RootError = errString(err)
	}
	for _, p := range req.Inclusion {
		proof, err := hashes(p.Proof)
		if err == nil {
			var th tlog.Hash
			if th, err = tlog.TreeHash(p.Size, tree); err == nil {
				err = tlog.CheckRecord(proof, p.Size, th, p.Index, tlog.RecordHash(entries[p.Index]))
			}
		}
		a.Inclusion = append(a.Inclusion, errString(err))
	}
	for _, p := range req.Consistency {
		proof, err := hashes(p.Proof)
		if err == nil {
			var oh, nh tlog.Hash
			if oh, err = tlog.TreeHash(p.Old, tree); err == nil {
				if nh, err = tlog.TreeHash(p.New, tree); err == nil {
					err = tlog.CheckTree(proof, p.New, nh, p.Old, oh)
				}
			}
		}
		a.Consistency = append(a.Consistency, errString(err))
	}
	return a, nil
}

func makeVectors(req request) (answer, error) {
	var a answer
	skey, vkey, err := note.GenerateKey(rand.Reader, "go.example/interop")
	if err != nil {
		return a, err
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		return a, err
	}
	n := int64(len(req.Entries))
	entries := make([][]byte, n)
	for i, e := range req.Entries {
		if entries[i], err = base64.StdEncoding.DecodeString(e); err != nil {
			return a, err
		}
	}
	tree, err := build(entries)
	if err != nil {
		return a, err
	}
	v := &vectors{LogKey: vkey, Entries: req.Entries}
	for size := int64(0); size <= n; size++ {
		th, err := tlog.TreeHash(size, tree)
		if err != nil {
			return a, err
		}
		if size == 0 {
			th = sha256.Sum256(nil) // RFC 6962's empty root; tlog.TreeHash(0) is all zeros
		}
		v.Roots = append(v.Roots, base64.StdEncoding.EncodeToString(th[:]))
	}
	th, _ := tlog.TreeHash(n, tree)
	text := fmt.Sprintf("go.example/interop\n%d\n%s\n", n, th)
	msg, err := note.Sign(&note.Note{Text: text}, signer)
	if err != nil {
		return a, err
	}
	v.Note = string(msg)
	v.Tampered = strings.Replace(string(msg), fmt.Sprintf("\n%d\n", n), fmt.Sprintf("\n%d\n", n+1), 1)
	for _, s := range req.Sizes {
		for _, i := range req.Indexes {
			if i >= s {
				continue
			}
			p, err := tlog.ProveRecord(s, i, tree)
			if err != nil {
				return a, err
			}
			v.Inclusion = append(v.Inclusion, inclusion{i, s, b64(p)})
		}
		for _, old := range req.Sizes {
			if old < 1 || old > s {
				continue
			}
			p, err := tlog.ProveTree(s, old, tree)
			if err != nil {
				return a, err
			}
			v.Consistency = append(v.Consistency, consistency{old, s, b64(p)})
		}
	}
	a.Vectors = v
	return a, nil
}

func b64(hs []tlog.Hash) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = base64.StdEncoding.EncodeToString(h[:])
	}
	return out
}

// httpTiles reads C2SP tiles (tile/<L>/<N>[.p/<W>]) for Go's TileHashReader (which names them
// tile/8/<L>/<N>[.p/<W>]) from a served log, and verifies nothing itself: TileHashReader
// checks every tile against the tree hash it was given.
type httpTiles struct{ url string }

func (t *httpTiles) Height() int                     { return 8 }
func (t *httpTiles) SaveTiles([]tlog.Tile, [][]byte) {}
func (t *httpTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, tile := range tiles {
		path := "tile/" + strings.TrimPrefix(tile.Path(), "tile/8/")
		resp, err := http.Get(t.url + "/" + path)
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != 200 {
			return nil, fmt.Errorf("GET /%s: %s", path, resp.Status)
		}
		out[i] = data
	}
	return out, nil
}

func readTiles(req request) (answer, error) {
	a, err := check(request{LogKey: req.LogKey, Note: req.Note})
	if err != nil || a.NoteError != "" {
		return a, err
	}
	_, n, root, _ := parseCheckpoint(strings.SplitN(req.Note, "\n\n", 2)[0] + "\n")
	r := tlog.TileHashReader(tlog.Tree{N: n, Hash: root}, &httpTiles{req.URL})
	th, err := tlog.TreeHash(n, r)
	if err == nil && th != root {
		err = errors.New("tree hash from tiles differs from the checkpoint")
	}
	a.RootError = errString(err)
	for _, i := range req.Indexes {
		var msg string
		p, err := tlog.ProveRecord(n, i, r)
		if err == nil {
			err = tlog.CheckRecord(p, n, root, i, tlog.RecordHash([]byte(fmt.Sprintf("entry %d", i))))
		}
		msg = errString(err)
		a.Inclusion = append(a.Inclusion, msg)
	}
	for _, old := range req.Sizes {
		p, err := tlog.ProveTree(n, old, r)
		if err == nil {
			var oh tlog.Hash
			if oh, err = tlog.TreeHash(old, r); err == nil {
				err = tlog.CheckTree(p, n, root, old, oh)
			}
		}
		a.Consistency = append(a.Consistency, errString(err))
	}
	return a, nil
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: tloginterop check|vectors|tiles < request.json")
		os.Exit(2)
	}
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fmt.Fprintln(os.Stderr, "bad request:", err)
		os.Exit(2)
	}
	var a answer
	var err error
	switch os.Args[1] {
	case "check":
		a, err = check(req)
	case "vectors":
		a, err = makeVectors(req)
	case "tiles":
		a, err = readTiles(req)
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tloginterop:", err)
		os.Exit(1)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(a); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Stdout.Write(buf.Bytes())
}
