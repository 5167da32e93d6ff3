package storage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/wemesse/server/internal/model"
)

// S3 tuning. Variables so that tests can shrink them.
var (
	// s3PartSize is the part size of a staged upload: the memory one upload
	// holds, and 10,000 parts of it bound an upload's size (156 GiB).
	s3PartSize uint64 = 16 << 20
	// s3StaleAfter is how old another server's staged object or incomplete
	// upload must be before CleanStaging takes it for a leftover.
	s3StaleAfter = 24 * time.Hour
	// s3MaxWindow bounds one ranged GET of a download; see objectReader.
	s3MaxWindow int64 = 64 << 20
)

// s3MaxCopy is the largest object one server-side CopyObject may copy;
// larger ones are copied part by part.
const s3MaxCopy = 5 << 30

// s3CleanupTimeout bounds the clean-up after a failure, which runs even
// when the request's context has ended.
const s3CleanupTimeout = time.Minute

// S3 stores files as objects under a prefix of a bucket in an
// S3-compatible object store (AWS S3, MinIO, Ceph, R2...). A file at key
// is the object <prefix>/<key>; staged files are objects under
// <prefix>/.staging/, named after the server that staged them, so that
// several servers may share a bucket.
type S3 struct {
	client *minio.Client
	core   minio.Core
	bucket string
	prefix string // "" or ends with "/"
	// instance names this server's staged objects; see CleanStaging.
	instance string

	mu     sync.Mutex
	active map[string]bool // staged ids being written or not yet published or discarded
}

// NewS3 connects to the bucket that storageURL (s3://bucket/prefix) names
// and checks that it exists. The endpoint, region and credentials come
// from the standard variables, read through getenv:
//
//   - AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL: the store's base URL, such
//     as http://127.0.0.1:9000; its scheme decides TLS. Unset: AWS S3.
//   - AWS_REGION or AWS_DEFAULT_REGION; unset: us-east-1.
//   - AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and, optionally,
//     AWS_SESSION_TOKEN.
//
// A custom endpoint is addressed path-style (http://host/bucket/key), which
// every S3-compatible store understands.
func NewS3(ctx context.Context, storageURL string, getenv func(string) string) (*S3, error) {
	return newS3(ctx, storageURL, getenv, nil)
}

func newS3(ctx context.Context, storageURL string, getenv func(string) string, transport http.RoundTripper) (*S3, error) {
	bucket, prefix, err := parseStorageURL(storageURL)
	if err != nil {
		return nil, err
	}
	endpoint := getenv("AWS_ENDPOINT_URL_S3")
	if endpoint == "" {
		endpoint = getenv("AWS_ENDPOINT_URL")
	}
	host, secure, lookup := "s3.amazonaws.com", true, minio.BucketLookupAuto
	if endpoint != "" {
		u, err := url.Parse(endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.Trim(u.Path, "/") != "" || u.RawQuery != "" {
			return nil, fmt.Errorf("storage: AWS_ENDPOINT_URL must look like https://host[:port], not %q", endpoint)
		}
		host, secure, lookup = u.Host, u.Scheme == "https", minio.BucketLookupPath
	}
	region := getenv("AWS_REGION")
	if region == "" {
		region = getenv("AWS_DEFAULT_REGION")
	}
	if region == "" {
		region = "us-east-1"
	}
	access, secret := getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY")
	if access == "" || secret == "" {
		return nil, errors.New("storage: object storage needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	}
	client, err := minio.New(host, &minio.Options{
		Creds:        credentials.NewStaticV4(access, secret, getenv("AWS_SESSION_TOKEN")),
		Secure:       secure,
		Region:       region,
		BucketLookup: lookup,
		Transport:    transport,
	})
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	s := &S3{
		client: client, core: minio.Core{Client: client}, bucket: bucket, prefix: prefix,
		instance: randomHex(6), active: map[string]bool{},
	}
	where := client.EndpointURL().Redacted()
	exists, err := client.BucketExists(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("storage: check bucket %q at %s: %w", bucket, where, err)
	}
	if !exists {
		return nil, fmt.Errorf("storage: bucket %q does not exist at %s; create it first", bucket, where)
	}
	return s, nil
}

// parseStorageURL splits s3://bucket/prefix. The prefix, when present,
// follows the rules of a key.
func parseStorageURL(storageURL string) (bucket, prefix string, err error) {
	u, err := url.Parse(storageURL)
	if err != nil || u.Scheme != "s3" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", "", fmt.Errorf("storage: %q is not an s3://bucket/prefix URL", storageURL)
	}
	prefix = strings.Trim(u.Path, "/")
	if prefix != "" && !ValidKey(prefix) {
		return "", "", fmt.Errorf("storage: invalid prefix %q in %q: no empty, dot or dot-led segments", prefix, storageURL)
	}
	if prefix != "" {
		prefix += "/"
	}
	return u.Host, prefix, nil
}

// Stage streams r into a new staged object, as a multipart upload of
// s3PartSize parts, so that at most one part is held in memory. On error
// the multipart upload is aborted and nothing remains.
func (s *S3) Stage(ctx context.Context, r io.Reader) (staged string, size int64, err error) {
	id := s.instance + "-" + randomHex(16)
	name := s.stagingPrefix() + id
	s.setActive(id, true)
	cr := &sourceReader{r: contextReader{ctx, r}}
	defer func() {
		if err != nil {
			s.cleanup(ctx, name)
			s.setActive(id, false)
			// The reader's own error (too large, a client gone) is the
			// cause, whatever the store made of it.
			if cr.err != nil {
				err = cr.err
			}
		}
	}()
	_, err = s.client.PutObject(ctx, s.bucket, name, cr, -1, minio.PutObjectOptions{
		PartSize:    s3PartSize,
		ContentType: "application/octet-stream",
	})
	if err != nil {
		return "", 0, s.unavailable("stage", err)
	}
	return id, cr.n, nil
}

// Publish copies a staged object to key on the server side, then removes
// the staged object. The copy is atomic: the object at key appears whole or
// not at all. When Publish fails, no object is left at key.
func (s *S3) Publish(ctx context.Context, staged, key string) error {
	src, err := s.stagedName(staged)
	if err != nil {
		return err
	}
	if !ValidKey(key) {
		return model.Errorf(model.Invalid, "Invalid file path %q.", key)
	}
	dst := s.prefix + key
	info, err := s.client.StatObject(ctx, s.bucket, src, minio.StatObjectOptions{})
	if err != nil {
		return s.unavailable("publish", err)
	}
	dstOpts := minio.CopyDestOptions{Bucket: s.bucket, Object: dst}
	srcOpts := minio.CopySrcOptions{Bucket: s.bucket, Object: src, MatchETag: info.ETag}
	if info.Size <= s3MaxCopy {
		_, err = s.client.CopyObject(ctx, dstOpts, srcOpts)
	} else {
		_, err = s.client.ComposeObject(ctx, dstOpts, srcOpts)
	}
	if err != nil {
		// The copy may have completed at the store with its answer lost.
		s.cleanup(ctx, dst)
		return s.unavailable("publish", err)
	}
	s.setActive(staged, false)
	// A staged object left here is this server's, and CleanStaging
	// removes it.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s3CleanupTimeout)
	defer cancel()
	_ = s.client.RemoveObject(rctx, s.bucket, src, minio.RemoveObjectOptions{})
	return nil
}

// OpenStaged opens a staged object for reading through ranged GETs, as
// Open does.
func (s *S3) OpenStaged(ctx context.Context, staged string) (io.ReadSeekCloser, error) {
	name, err := s.stagedName(staged)
	if err != nil {
		return nil, err
	}
	info, err := s.client.StatObject(ctx, s.bucket, name, minio.StatObjectOptions{})
	if err != nil {
		return nil, s.unavailable("open staged", err)
	}
	return &objectReader{ctx: ctx, s: s, name: name, etag: info.ETag, size: info.Size}, nil
}

// Discard removes a staged object. A missing one is not an error.
func (s *S3) Discard(ctx context.Context, staged string) error {
	name, err := s.stagedName(staged)
	if err != nil {
		return err
	}
	defer s.setActive(staged, false)
	if err := s.client.RemoveObject(ctx, s.bucket, name, minio.RemoveObjectOptions{}); err != nil && !isNotFound(err) {
		return s.unavailable("discard", err)
	}
	return nil
}

// Remove deletes the object at key. A missing one is not an error.
func (s *S3) Remove(ctx context.Context, key string) error {
	if !ValidKey(key) {
		return model.Errorf(model.Invalid, "Invalid file path %q.", key)
	}
	if err := s.client.RemoveObject(ctx, s.bucket, s.prefix+key, minio.RemoveObjectOptions{}); err != nil && !isNotFound(err) {
		return s.unavailable("remove", err)
	}
	return nil
}

// Open opens the object at key for reading. It returns NotFound when there
// is no such object. The reader fetches bytes with ranged GETs from where
// it was sought, so that a Range request served with http.ServeContent
// fetches only about the bytes it sends (see objectReader); every GET
// requires the ETag seen here, so a replaced object fails the download
// rather than mixing two files.
func (s *S3) Open(ctx context.Context, key string) (io.ReadSeekCloser, fs.FileInfo, error) {
	if !ValidKey(key) {
		return nil, nil, model.Errorf(model.NotFound, "The file does not exist.")
	}
	name := s.prefix + key
	info, err := s.client.StatObject(ctx, s.bucket, name, minio.StatObjectOptions{})
	if err != nil {
		if isNotFound(err) {
			return nil, nil, model.Errorf(model.NotFound, "The file does not exist.")
		}
		return nil, nil, s.unavailable("open", err)
	}
	return &objectReader{ctx: ctx, s: s, name: name, etag: info.ETag, size: info.Size},
		objectInfo{name: path.Base(key), size: info.Size, modTime: info.LastModified}, nil
}

// PresignedURL returns a URL at the store that serves the object at key
// (Range and ETag included) to anyone holding it, for ttl. The response
// carries the file's name and type as a download from this server would.
// NotFound when there is no such object, so that a client is not sent to a
// store's error.
func (s *S3) PresignedURL(ctx context.Context, key string, ttl time.Duration) (string, error) {
	if !ValidKey(key) {
		return "", model.Errorf(model.NotFound, "The file does not exist.")
	}
	name := s.prefix + key
	if _, err := s.client.StatObject(ctx, s.bucket, name, minio.StatObjectOptions{}); err != nil {
		if isNotFound(err) {
			return "", model.Errorf(model.NotFound, "The file does not exist.")
		}
		return "", s.unavailable("presign", err)
	}
	base := path.Base(key)
	params := url.Values{}
	params.Set("response-content-disposition", mime.FormatMediaType("attachment", map[string]string{"filename": base}))
	if strings.EqualFold(path.Ext(base), ".apk") {
		params.Set("response-content-type", "application/vnd.android.package-archive")
	}
	u, err := s.client.PresignedGetObject(ctx, s.bucket, name, ttl, params)
	if err != nil {
		return "", fmt.Errorf("storage: presign: %w", err)
	}
	return u.String(), nil
}

// CleanStaging removes staged objects and aborts incomplete multipart
// uploads that no upload is writing: those this server left (a failed
// clean-up), and those of any server that are older than a day, which no
// upload takes. Another server's recent ones are its uploads in progress
// and stay. It returns how many it removed.
func (s *S3) CleanStaging(ctx context.Context) (int, error) {
	n := 0
	var errs []error
	stale := time.Now().Add(-s3StaleAfter)
	for obj := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.stagingPrefix(), Recursive: true}) {
		if obj.Err != nil {
			return n, s.unavailable("clean staging", obj.Err)
		}
		if !s.leftover(obj.Key, obj.LastModified, stale) {
			continue
		}
		if err := s.client.RemoveObject(ctx, s.bucket, obj.Key, minio.RemoveObjectOptions{}); err != nil && !isNotFound(err) {
			errs = append(errs, err)
			continue
		}
		n++
	}
	for up := range s.client.ListIncompleteUploads(ctx, s.bucket, s.stagingPrefix(), true) {
		if up.Err != nil {
			return n, s.unavailable("clean staging", up.Err)
		}
		if !s.leftover(up.Key, up.Initiated, stale) {
			continue
		}
		if err := s.core.AbortMultipartUpload(ctx, s.bucket, up.Key, up.UploadID); err != nil && !isNotFound(err) {
			errs = append(errs, err)
			continue
		}
		n++
	}
	if len(errs) > 0 {
		return n, fmt.Errorf("storage: clean staging: %w", errors.Join(errs...))
	}
	return n, nil
}

// leftover reports whether the staged object or upload name, last touched
// at t, is no upload's.
func (s *S3) leftover(name string, t time.Time, stale time.Time) bool {
	staged, inStaging := strings.CutPrefix(name, s.stagingPrefix())
	if inStaging && strings.HasPrefix(staged, s.instance+"-") {
		s.mu.Lock()
		defer s.mu.Unlock()
		return !s.active[staged]
	}
	// A store that gives no time gives no proof of age.
	return !t.IsZero() && t.Before(stale)
}

// cleanup makes sure nothing remains at name after a failure: no
// incomplete multipart upload (the client aborts its own, but only as
// best effort) and no object (the store may have completed what the
// client reported failed). It runs when ctx has ended too.
func (s *S3) cleanup(ctx context.Context, name string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s3CleanupTimeout)
	defer cancel()
	_ = s.client.RemoveIncompleteUpload(ctx, s.bucket, name)
	_ = s.client.RemoveObject(ctx, s.bucket, name, minio.RemoveObjectOptions{})
}

func (s *S3) stagingPrefix() string { return s.prefix + stagingDir + "/" }

// stagedName returns the object name of a staged id.
func (s *S3) stagedName(staged string) (string, error) {
	inst, rnd, ok := strings.Cut(staged, "-")
	if !ok || !isHex(inst) || !isHex(rnd) {
		return "", fmt.Errorf("storage: invalid staged id %q", staged)
	}
	return s.stagingPrefix() + staged, nil
}

func (s *S3) setActive(staged string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on {
		s.active[staged] = true
	} else {
		delete(s.active, staged)
	}
}

// unavailable wraps a store error as Unavailable: the store did not do
// what was asked, and a retry may succeed.
func (s *S3) unavailable(op string, err error) error {
	var me *model.Error
	if errors.As(err, &me) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%w (storage: %s: %w)", model.Errorf(model.Unavailable, "The file store is unavailable; retry shortly."), op, err)
}

func isNotFound(err error) bool {
	switch minio.ToErrorResponse(err).Code {
	case minio.NoSuchKey, minio.NoSuchUpload, "NotFound":
		return true
	}
	return false
}

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never returns an error
	return hex.EncodeToString(b)
}

// sourceReader counts what it reads and keeps the first error of its
// source other than EOF.
type sourceReader struct {
	r   io.Reader
	n   int64
	err error
}

func (c *sourceReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	return n, err
}

// objectInfo describes an object as a file.
type objectInfo struct {
	name    string
	size    int64
	modTime time.Time
}

func (i objectInfo) Name() string       { return i.name }
func (i objectInfo) Size() int64        { return i.size }
func (i objectInfo) Mode() fs.FileMode  { return 0o444 }
func (i objectInfo) ModTime() time.Time { return i.modTime }
func (i objectInfo) IsDir() bool        { return false }
func (i objectInfo) Sys() any           { return nil }

// objectReader reads an object through ranged GETs. Seeking costs nothing;
// a read at a new offset starts a GET of a window that begins with the
// bytes asked for and doubles while reads continue in sequence, up to
// s3MaxWindow. A short range (ServeContent reads a range through a buffer
// of at most its length) is fetched exactly; a long one fetches at most
// about twice what it reads, and never s3MaxWindow more; a whole file takes
// a GET per window, a few dozen for a GiB.
type objectReader struct {
	ctx  context.Context
	s    *S3
	name string
	etag string
	size int64

	off     int64         // where the next Read starts
	body    io.ReadCloser // the open GET, which delivers [bodyOff, bodyEnd)
	bodyOff int64
	bodyEnd int64
	window  int64 // length of the last GET
}

func (o *objectReader) Read(p []byte) (int, error) {
	if o.off >= o.size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if o.body == nil || o.bodyOff != o.off || o.bodyOff >= o.bodyEnd {
		if err := o.fetch(int64(len(p))); err != nil {
			return 0, err
		}
	}
	if room := o.bodyEnd - o.bodyOff; int64(len(p)) > room {
		p = p[:room]
	}
	n, err := o.body.Read(p)
	o.off += int64(n)
	o.bodyOff += int64(n)
	switch {
	case err == io.EOF && o.bodyOff < o.bodyEnd:
		err = io.ErrUnexpectedEOF
	case err == io.EOF:
		err = nil // the window is done; the next Read fetches another
	case err != nil:
		err = o.s.unavailable("read", err)
	}
	return n, err
}

// fetch starts a GET at o.off.
func (o *objectReader) fetch(want int64) error {
	sequential := o.body != nil && o.bodyOff == o.off && o.bodyOff == o.bodyEnd
	o.closeBody()
	window := want
	if sequential {
		window = max(window, min(2*o.window, s3MaxWindow))
	}
	end := min(o.size, o.off+window)
	opts := minio.GetObjectOptions{}
	opts.SetMatchETag(o.etag)
	if err := opts.SetRange(o.off, end-1); err != nil {
		return err
	}
	body, _, _, err := o.s.core.GetObject(o.ctx, o.s.bucket, o.name, opts)
	if err != nil {
		return o.s.unavailable("read", err)
	}
	o.body, o.bodyOff, o.bodyEnd, o.window = body, o.off, end, end-o.off
	return nil
}

func (o *objectReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += o.off
	case io.SeekEnd:
		offset += o.size
	default:
		return 0, errors.New("storage: seek: invalid whence")
	}
	if offset < 0 {
		return 0, errors.New("storage: seek: negative position")
	}
	o.off = offset
	return offset, nil
}

func (o *objectReader) Close() error {
	o.closeBody()
	return nil
}

func (o *objectReader) closeBody() {
	if o.body != nil {
		o.body.Close()
		o.body = nil
	}
}
