using System.Collections.Concurrent;
using System.Globalization;

namespace DumpScope.Scenarios;

// An ordinary process that did its work and now idles: workers wait for the
// next job, nothing holds a monitor, nothing waits for finalization.

public sealed class Job
{
    public Job(int id) => Id = id;

    public int Id { get; }
}

public sealed class JobResult
{
    public JobResult(int id, long checksum)
    {
        Id = id;
        Checksum = checksum;
    }

    public int Id { get; }

    public long Checksum { get; }
}

public enum JobPriority
{
    Low,
    Normal,
    High,
}

[Flags]
public enum JobOptions
{
    None = 0,
    Retry = 1,
    Log = 2,
    Notify = 4,
}

/// <summary>The schedule the workers run under: value types an inspector
/// must show as values (decimal, DateTime, TimeSpan, Guid, enums).</summary>
public sealed class JobSchedule
{
    public decimal Budget = 1234567.89m;
    public decimal Refund = -0.005m;
    public DateTime Created = new DateTime(2026, 3, 14, 15, 9, 26, DateTimeKind.Utc).AddTicks(5358979);
    public DateTime Due = new DateTime(2026, 12, 31, 23, 59, 0, DateTimeKind.Unspecified);
    public TimeSpan Timeout = TimeSpan.FromMinutes(90) + TimeSpan.FromMilliseconds(250);
    public Guid Id = Guid.Parse("6f9619ff-8b86-d011-b42d-00c04fc964ff");
    public JobPriority Priority = JobPriority.High;
    public JobOptions Options = JobOptions.Retry | JobOptions.Notify;
}

internal static class Healthy
{
    private static readonly JobSchedule Schedule = new();
    private static readonly BlockingCollection<Job> Queue = new();
    private static readonly ConcurrentBag<JobResult> Results = new();

    internal static Facts Plant(string[] args)
    {
        int workerCount = (int)Args.Long(args, "--workers", 4);
        int jobCount = (int)Args.Long(args, "--jobs", 200);
        var done = new CountdownEvent(jobCount);
        var workers = new Dictionary<string, object?>[workerCount];
        var started = new CountdownEvent(workerCount);

        for (int w = 0; w < workerCount; w++)
        {
            int slot = w;
            var worker = new Thread(() =>
            {
                workers[slot] = ThreadFacts.Current();
                started.Signal();
                foreach (Job job in Queue.GetConsumingEnumerable())
                {
                    Results.Add(new JobResult(job.Id, Checksum(job.Id)));
                    done.Signal();
                }
            })
            { Name = $"Worker-{w + 1}", IsBackground = true };
            if (w == 0 && OperatingSystem.IsWindows())
            {
                // One STA worker: a healthy process may have STA threads too.
                worker.SetApartmentState(ApartmentState.STA);
            }
            worker.Start();
        }
        started.Wait();
        for (int i = 0; i < jobCount; i++)
        {
            Queue.Add(new Job(i));
        }
        if (!done.Wait(TimeSpan.FromSeconds(30)))
        {
            throw new TimeoutException("timed out waiting for the jobs to finish");
        }
        Wait.ForBlockingToSettle();

        return new Facts
        {
            ["worker_threads"] = workers,
            ["jobs_completed"] = Results.Count,
            ["result_type"] = typeof(JobResult).FullName,
            // As .NET itself prints them (invariant culture, round-trip forms).
            ["schedule_type"] = typeof(JobSchedule).FullName,
            ["schedule_fields"] = new Dictionary<string, string>
            {
                ["Budget"] = Schedule.Budget.ToString(CultureInfo.InvariantCulture),
                ["Refund"] = Schedule.Refund.ToString(CultureInfo.InvariantCulture),
                ["Created"] = Schedule.Created.ToString("o", CultureInfo.InvariantCulture),
                ["Due"] = Schedule.Due.ToString("o", CultureInfo.InvariantCulture),
                ["Timeout"] = Schedule.Timeout.ToString("c", CultureInfo.InvariantCulture),
                ["Id"] = Schedule.Id.ToString("D"),
                ["Priority"] = Schedule.Priority.ToString(),
                ["Options"] = Schedule.Options.ToString(),
            },
        };
    }

    private static long Checksum(int seed)
    {
        long sum = seed;
        for (int i = 0; i < 100_000; i++)
        {
            sum = sum * 31 + i;
        }
        return sum;
    }
}
