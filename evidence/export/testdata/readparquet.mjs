// Reads a Parquet file with hyparquet, a reader independent of the Go
// writer, and prints its rows as one JSON array: INT64 values as decimal
// strings (JSON numbers cannot hold them all), timestamps as ISO 8601.
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet'

const file = await asyncBufferFromFile(process.argv[2])
const rows = await parquetReadObjects({ file })
process.stdout.write(JSON.stringify(rows, (_, v) => (typeof v === 'bigint' ? v.toString() : v)))
