using System.Diagnostics;

namespace DumpScope.Engine.Tests;

/// <summary>
/// Real scenario dumps, made (or found in the cache) by the repository's own
/// generator: `python3 -m scenarios.generate` prints where each dump is.
/// </summary>
public static class ScenarioDumps
{
    private static readonly Dictionary<(string, string, int?), (string Dump, string RuntimeDir)> Cache = new();

    public static string RepoRoot { get; } = FindRepoRoot();

    private static string FindRepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "engine", "build.sh")))
            dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("repository root not found above " + AppContext.BaseDirectory);
    }

    /// <param name="objects">live objects of big-heap (the generator's default when null).</param>
    public static (string Dump, string RuntimeDir) Get(string scenario, string runtime, int? objects = null)
    {
        lock (Cache)
        {
            if (Cache.TryGetValue((scenario, runtime, objects), out var found))
                return found;
            var start = new ProcessStartInfo("/usr/bin/python3", $"-m scenarios.generate --scenario {scenario} --runtime {runtime} --kind heap"
                + (objects is { } n ? $" --objects {n}" : ""))
            {
                WorkingDirectory = RepoRoot,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            using var process = Process.Start(start)!;
            string output = process.StandardOutput.ReadToEnd();
            string errors = process.StandardError.ReadToEnd();
            process.WaitForExit();
            if (process.ExitCode != 0)
                throw new InvalidOperationException($"scenarios.generate failed: {errors}");
            string line = output.Split('\n').First(l => l.Contains(".core"));
            string dump = line[line.IndexOf('/')..].Trim();
            string facts = File.ReadAllText(dump + ".facts.json");
            using var doc = System.Text.Json.JsonDocument.Parse(facts);
            string runtimeDir = doc.RootElement.GetProperty("runtime_dir").GetString()!;
            return Cache[(scenario, runtime, objects)] = (dump, runtimeDir);
        }
    }
}
