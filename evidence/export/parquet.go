package export

import (
	"io"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/leaseguard/leaseguard/evidence"
)

// Row is one event in Parquet. OCSF events nest and differ per class, so the
// columns are the attributes every leaseguard event has, under their OCSF
// names and types (metadata and user are groups, as in OCSF; time is a
// timestamp in milliseconds, as OCSF's timestamp_t), two columns of the
// chain, and the whole OCSF event, unmapped.chain included, as JSON in raw.
// docs/siem/README.md lists the columns.
type Row struct {
	Time         time.Time   `parquet:"time,timestamp(millisecond)"`
	ClassUID     int32       `parquet:"class_uid"`
	ClassName    string      `parquet:"class_name"`
	CategoryUID  int32       `parquet:"category_uid"`
	ActivityID   int32       `parquet:"activity_id"`
	TypeUID      int64       `parquet:"type_uid"`
	SeverityID   int32       `parquet:"severity_id"`
	StatusID     int32       `parquet:"status_id"`
	StatusCode   string      `parquet:"status_code"`
	StatusDetail string      `parquet:"status_detail"`
	Message      string      `parquet:"message"`
	Metadata     RowMetadata `parquet:"metadata"`
	User         *RowUser    `parquet:"user,optional"`
	ChainSeq     int64       `parquet:"chain_seq"`
	ChainHash    string      `parquet:"chain_hash"`
	Raw          string      `parquet:"raw"`
}

// RowMetadata is metadata's columns: the event id and the OCSF version.
type RowMetadata struct {
	UID     string `parquet:"uid"`
	Version string `parquet:"version"`
}

// RowUser is user's columns (revocations): the database user and its role
// OID. An event without a user has a null group.
type RowUser struct {
	Name *string `parquet:"name,optional"`
	UID  *string `parquet:"uid,optional"`
}

// ToRow makes the Parquet row of an exported event.
func ToRow(x evidence.Exported) Row {
	s := x.Summary
	r := Row{
		Time: time.UnixMilli(s.Time).UTC(), ClassUID: int32(s.ClassUID), ClassName: s.ClassName,
		CategoryUID: int32(s.CategoryUID), ActivityID: int32(s.ActivityID), TypeUID: s.TypeUID,
		SeverityID: int32(s.SeverityID), StatusID: int32(s.StatusID), StatusCode: s.StatusCode,
		StatusDetail: s.StatusDetail, Message: s.Message,
		Metadata: RowMetadata{UID: s.Metadata.UID, Version: s.Metadata.Version},
		ChainSeq: x.Chain.Seq, ChainHash: x.Chain.Hash, Raw: string(x.OCSF),
	}
	if s.User != nil {
		r.User = &RowUser{Name: optional(s.User.Name), UID: optional(s.User.UID)}
	}
	return r
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// rowGroupRows bounds a row group: the writer holds one in memory, and
// AWS Security Lake asks for row groups of at most 256 MB. An event is
// about 2 KB of JSON in raw, so 50,000 rows stay near 100 MB uncompressed.
var rowGroupRows int64 = 50_000

// parquetEncoder writes row groups of at most rowGroupRows rows and the file
// footer on close. Snappy compression: every Parquet reader has it.
type parquetEncoder struct {
	w *parquet.GenericWriter[Row]
}

func newParquetEncoder(out io.Writer) *parquetEncoder {
	return &parquetEncoder{w: parquet.NewGenericWriter[Row](out, parquet.Compression(&parquet.Snappy),
		parquet.MaxRowsPerRowGroup(rowGroupRows), parquet.CreatedBy("leaseguard", "", ""))}
}

func (e *parquetEncoder) write(x evidence.Exported) error {
	_, err := e.w.Write([]Row{ToRow(x)})
	return err
}

func (e *parquetEncoder) close() error { return e.w.Close() }
