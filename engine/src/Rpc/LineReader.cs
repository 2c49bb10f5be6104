namespace DumpScope.Engine.Rpc;

/// <summary>One line of input: its bytes, or only its length when it was too long to keep.</summary>
public readonly record struct InputLine(byte[]? Bytes, long Length)
{
    public bool TooLong => Bytes is null;
}

/// <summary>
/// Reads `\n`-terminated lines of bytes, keeping at most `maxBytes` of one
/// line: the rest of a longer line is read and dropped as it arrives, so a
/// hostile client cannot make the engine hold a line of any size.
/// </summary>
public sealed class LineReader(Stream input, int maxBytes)
{
    private readonly byte[] _chunk = new byte[64 * 1024];
    private int _chunkStart;
    private int _chunkEnd;
    private bool _ended;

    /// <summary>The next line without its `\n` (and `\r`), or null at the end of input.</summary>
    public InputLine? ReadLine()
    {
        var kept = new MemoryStream();
        long length = 0;
        bool any = false;
        while (true)
        {
            if (_chunkStart == _chunkEnd)
            {
                if (_ended)
                    return any ? Finish(kept, length) : null;
                _chunkStart = 0;
                _chunkEnd = input.Read(_chunk, 0, _chunk.Length);
                if (_chunkEnd == 0)
                {
                    _ended = true;
                    continue;
                }
            }
            any = true;
            int newline = Array.IndexOf(_chunk, (byte)'\n', _chunkStart, _chunkEnd - _chunkStart);
            int stop = newline < 0 ? _chunkEnd : newline;
            int take = stop - _chunkStart;
            if (length + take <= maxBytes)
                kept.Write(_chunk, _chunkStart, take);
            length += take;
            _chunkStart = newline < 0 ? _chunkEnd : newline + 1;
            if (newline >= 0)
                return Finish(kept, length);
        }
    }

    private InputLine Finish(MemoryStream kept, long length)
    {
        if (length > maxBytes)
            return new InputLine(null, length);
        byte[] bytes = kept.ToArray();
        if (bytes.Length > 0 && bytes[^1] == '\r')
            Array.Resize(ref bytes, bytes.Length - 1);
        return new InputLine(bytes, length);
    }
}
